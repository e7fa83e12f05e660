/// Splits a command line into words the way Python's `shlex.split` does, so commands that worked
/// against the reference server get exactly the same argv here.
///
/// The rules are those of `shlex(s, posix=True)` with `whitespace_split=True` and no comment
/// characters: words are separated by space, tab, CR and LF; `'…'` quotes everything literally;
/// `"…"` quotes everything except `\`, which escapes only `"` and `\` (before any other character
/// it stays in the word); outside quotes `\` escapes any character, including a newline. An empty
/// quoted string is a word of its own, and quoted and unquoted parts next to each other join into
/// one word. There is no globbing, no variable expansion and no operator: `#`, `$`, `;`, `|` are
/// ordinary characters.
public enum ShellWords {
    /// Why a command cannot be split; the descriptions are Python's `ValueError` messages.
    public enum Error: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        /// A `'` or `"` is never closed.
        case noClosingQuotation
        /// The command ends with a `\` that has nothing to escape.
        case noEscapedCharacter

        public var description: String {
            switch self {
            case .noClosingQuotation: "No closing quotation"
            case .noEscapedCharacter: "No escaped character"
            }
        }
    }

    /// Where the splitter is. Python's `shlex` has more states, but with `whitespace_split` and no
    /// comment or punctuation characters they collapse into these; the fixture table generated
    /// from the real `shlex.split` checks the equivalence.
    private enum State {
        /// Between words.
        case whitespace
        /// Inside a word, outside quotes. A word is started by any non-whitespace character,
        /// including a quote, so it is emitted even if it ends up empty (`''`).
        case word
        case singleQuoted
        case doubleQuoted
        /// After a `\` outside quotes.
        case escapedInWord
        /// After a `\` inside double quotes.
        case escapedInDoubleQuotes
    }

    /// Splits `command` into argv exactly as Python's `shlex.split` does.
    ///
    /// Works on Unicode scalars (Python's code points), so a combining mark after a quote or a
    /// space does not hide it, and any string can be split.
    /// - Throws: `.noClosingQuotation` for an unterminated quote, `.noEscapedCharacter` for a
    ///   trailing backslash (also inside double quotes, which Python checks first).
    public static func split(_ command: String) throws(ShellWords.Error) -> [String] {
        var words: [String] = []
        var word = String.UnicodeScalarView()
        var state = State.whitespace

        for scalar in command.unicodeScalars {
            switch state {
            case .whitespace, .word:
                if isWhitespace(scalar) {
                    if state == .word {
                        words.append(String(word))
                        word = String.UnicodeScalarView()
                    }
                    state = .whitespace
                } else if scalar == "'" {
                    state = .singleQuoted
                } else if scalar == "\"" {
                    state = .doubleQuoted
                } else if scalar == "\\" {
                    state = .escapedInWord
                } else {
                    word.append(scalar)
                    state = .word
                }
            case .singleQuoted:
                if scalar == "'" {
                    state = .word
                } else {
                    word.append(scalar)
                }
            case .doubleQuoted:
                if scalar == "\"" {
                    state = .word
                } else if scalar == "\\" {
                    state = .escapedInDoubleQuotes
                } else {
                    word.append(scalar)
                }
            case .escapedInWord:
                word.append(scalar)
                state = .word
            case .escapedInDoubleQuotes:
                // POSIX shells only let `\` escape the quote and itself inside double quotes;
                // before anything else the backslash is kept.
                if scalar != "\"" && scalar != "\\" {
                    word.append("\\")
                }
                word.append(scalar)
                state = .doubleQuoted
            }
        }

        switch state {
        case .whitespace:
            break
        case .word:
            words.append(String(word))
        case .singleQuoted, .doubleQuoted:
            throw .noClosingQuotation
        case .escapedInWord, .escapedInDoubleQuotes:
            throw .noEscapedCharacter
        }
        return words
    }

    /// `shlex.whitespace`: only these four, so vertical tab, form feed and no-break space are
    /// ordinary word characters (unlike Python's `str.split()`).
    private static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar == " " || scalar == "\t" || scalar == "\r" || scalar == "\n"
    }
}
