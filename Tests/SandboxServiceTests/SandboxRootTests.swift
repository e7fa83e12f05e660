import Foundation
import Testing

@testable import SandboxService

/// A fresh directory per test, laid out as `<base>/root` plus siblings, so escapes have somewhere
/// real to land. `base` is canonical, so expected paths can be spelled from it.
private struct Tree {
    let base: String
    let root: SandboxRoot

    init(rootName: String = "root") throws {
        let made = NSTemporaryDirectory() + "/SandboxRootTests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: made, withIntermediateDirectories: true)
        base = try #require(canonical(made))
        root = try SandboxRoot(path: base + "/" + rootName)
    }

    func makeDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func makeFile(_ path: String) throws {
        #expect(FileManager.default.createFile(atPath: path, contents: Data("x".utf8)))
    }

    func link(_ path: String, to target: String) throws {
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: base)
    }
}

extension SandboxRoot {
    /// Where a request path leads, spelled as a host path (tests only: the server never opens by path).
    fileprivate func realPath(_ request: String) throws(FileError.Code) -> String {
        try locate(request).hostPath
    }
}

/// The temp dir may itself sit behind a symlink; expected paths are spelled from its real path.
private func canonical(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

@Suite(.timeLimit(.minutes(1))) struct SandboxRootTests {
    @Test func emptyDotAndSlashNameTheRoot() throws {
        let tree = try Tree()
        defer { tree.remove() }
        for request in ["", ".", "/", "//", "./", "/./", "a/..", "a/b/../..", "./././"] {
            #expect(try tree.root.realPath(request) == tree.root.path, "\(request)")
        }
    }

    @Test func absolutePathsAreTakenRelativeToTheRoot() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        #expect(try tree.root.realPath("/etc/passwd") == root + "/etc/passwd")
        #expect(try tree.root.realPath("//x") == root + "/x")
        #expect(try tree.root.realPath("///a//b//") == root + "/a/b")
    }

    @Test func dotsAndTrailingSlashesAreNormalized() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.makeDirectory(root + "/dir")
        #expect(try tree.root.realPath("dir/") == root + "/dir")
        #expect(try tree.root.realPath("a/./b") == root + "/a/b")
        #expect(try tree.root.realPath("a/../b") == root + "/b")
        #expect(try tree.root.realPath("new/dir/../file.txt") == root + "/new/file.txt")
        #expect(try tree.root.realPath("../root/x") == root + "/x")
    }

    @Test(arguments: ["..", "../", "/..", "a/../../x", "../../../../etc/passwd", "dir/../../root-x", "a/b/../../../x"])
    func dotDotCannotClimbOut(_ request: String) throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeDirectory(tree.root.path + "/dir")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath(request) }
    }

    @Test func siblingWithTheRootAsPrefixIsOutside() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeDirectory(tree.base + "/root-evil")
        try tree.makeFile(tree.base + "/root-evil/x")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("../root-evil/x") }
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("../root-evil") }
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("../rootx") }
    }

    @Test func symlinkToSystemDirectoryEscapes() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.link(tree.root.path + "/etc", to: "/etc")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("etc") }
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("/etc/passwd") }
    }

    @Test func symlinkToFileOutsideEscapes() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeFile(tree.base + "/secret.txt")
        try tree.link(tree.root.path + "/innocent.txt", to: "../secret.txt")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("innocent.txt") }
    }

    @Test func symlinksWithinTheRootAreFollowed() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.makeDirectory(root + "/data/real")
        try tree.link(root + "/relative", to: "data/real")
        try tree.link(root + "/absolute", to: root + "/data/real")
        try tree.link(root + "/chain", to: "relative")
        try tree.link(root + "/data/up", to: "..")
        #expect(try tree.root.realPath("relative/f.txt") == root + "/data/real/f.txt")
        #expect(try tree.root.realPath("absolute/f.txt") == root + "/data/real/f.txt")
        #expect(try tree.root.realPath("chain") == root + "/data/real")
        #expect(try tree.root.realPath("data/up/data") == root + "/data")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("data/up/..") }
    }

    @Test func newFileUnderSymlinkedOutsideDirectoryEscapes() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeDirectory(tree.base + "/outside")
        try tree.link(tree.root.path + "/ext", to: tree.base + "/outside")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("ext/new/file.txt") }
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("ext/") }
    }

    @Test func dotDotAppliesToTheResolvedComponent() throws {
        // Lexically `out/..` is the root; for realpath it is the parent of where `out` points.
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeDirectory(tree.base + "/outside/deeper")
        try tree.link(tree.root.path + "/out", to: tree.base + "/outside/deeper")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("out/..") }
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("out/../../root-evil") }
        // Nothing outside the root is ever walked: a path that leaves it comes back in only through the root's own
        // path (`../root/x`), not through what lies outside (here `outside/deeper/../..`).
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("out/../../root/x") }
        #expect(try tree.root.realPath("../root/x") == tree.root.path + "/x")
    }

    @Test func rootReachedThroughSymlinkIsCanonicalized() throws {
        let tree = try Tree(rootName: "real")
        defer { tree.remove() }
        try tree.link(tree.base + "/alias", to: "real")
        let aliased = try SandboxRoot(path: tree.base + "/alias/")
        #expect(aliased.path == tree.base + "/real")
        #expect(try aliased.realPath("x") == tree.base + "/real/x")
        #expect(try aliased.realPath("../real/x") == tree.base + "/real/x")
        // The alias lies outside the root: it is not walked.
        #expect(throws: FileError.Code.escapesRoot) { try aliased.realPath("../alias/x") }
    }

    @Test func initCreatesMissingParentsAndRejectsFiles() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let nested = try SandboxRoot(path: tree.base + "/a/b/c/")
        #expect(nested.path == tree.base + "/a/b/c")
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: nested.path, isDirectory: &isDirectory) && isDirectory.boolValue)

        try tree.makeFile(tree.base + "/file")
        #expect(throws: SandboxRoot.SetupError.self) { try SandboxRoot(path: tree.base + "/file") }
        #expect(throws: SandboxRoot.SetupError.self) { try SandboxRoot(path: tree.base + "/file/sub") }
        #expect(throws: SandboxRoot.SetupError.self) { try SandboxRoot(path: "") }
    }

    @Test func symlinkLoopsAreTooManyLinks() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.link(root + "/loop", to: "loop")
        try tree.link(root + "/ping", to: "pong")
        try tree.link(root + "/pong", to: "ping")
        try tree.link(root + "/etc", to: "/etc")
        for request in ["loop", "ping/x/./y", "loop/../etc/passwd", "pong/../../x", "x/../loop/y"] {
            #expect(throws: FileError.Code.tooManyLinks, "\(request)") { try tree.root.realPath(request) }
        }
    }

    /// More than 40 links in one resolution is ELOOP, as in the kernel, never the path walked so far: such a chain
    /// used to exhaust the resolver and leave the rest of the path (`ext/passwd` through a link to `/etc`) unchecked.
    @Test(arguments: [41, 60])
    func longChainsAreTooManyLinks(_ length: Int) throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.link(root + "/ext", to: "/etc")
        try tree.makeDirectory(root + "/d")
        // Each `dotN` -> "." (a chain written out in the path), and `prevN` -> `prev(N-1)` (a chain of links).
        try tree.link(root + "/prev0", to: "d")
        for n in 1...length {
            try tree.link(root + "/dot\(n)", to: ".")
            try tree.link(root + "/prev\(n)", to: "prev\(n - 1)")
        }
        let dots = (1...length).map { "dot\($0)" }.joined(separator: "/")
        for request in [dots, dots + "/ext/passwd", dots + "/d/new.txt", "prev\(length)", "prev\(length)/x"] {
            #expect(throws: FileError.Code.tooManyLinks, "\(request.suffix(40))") { try tree.root.realPath(request) }
        }
        // Up to the limit, the same chains resolve.
        let forty = (1...40).map { "dot\($0)" }.joined(separator: "/")
        #expect(try tree.root.realPath(forty + "/d/f") == root + "/d/f")
        #expect(try tree.root.realPath("prev39/f") == root + "/d/f")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("dot1/dot2/ext/passwd") }
    }

    @Test func repeatedLinkCountsEveryTime() throws {
        // The same link followed 100 times is 100 links, as for the kernel.
        let tree = try Tree()
        defer { tree.remove() }
        try tree.link(tree.root.path + "/self", to: ".")
        #expect(
            try tree.root.realPath(Array(repeating: "self", count: 40).joined(separator: "/") + "/f") == tree.root.path
                + "/f")
        let request = Array(repeating: "self", count: 100).joined(separator: "/") + "/f"
        #expect(throws: FileError.Code.tooManyLinks) { try tree.root.realPath(request) }
    }

    @Test func absoluteTargetsComeBackThroughTheRootsOwnPath() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.makeDirectory(root + "/d")
        try tree.link(root + "/dotted", to: root + "/../root/d")
        try tree.link(root + "/slashes", to: "//" + root.dropFirst() + "//d/")
        try tree.link(root + "/sibling", to: tree.base + "/root-evil/x")
        try tree.link(
            root + "/up-and-in", to: tree.base + "/../" + (tree.base as NSString).lastPathComponent + "/root/d")
        #expect(try tree.root.realPath("dotted/f") == root + "/d/f")
        #expect(try tree.root.realPath("slashes/f") == root + "/d/f")
        #expect(try tree.root.realPath("up-and-in") == root + "/d")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("sibling") }
    }

    @Test func aNonDirectoryInThePathIsATailAsWritten() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.makeFile(root + "/file")
        #expect(try tree.root.realPath("file/x/y") == root + "/file/x/y")
        #expect(try tree.root.realPath("file/..") == root)
        #expect(try tree.root.realPath("missing/x/../../file") == root + "/file")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("file/../..") }
    }

    @Test func aDirectoryMovedOutDuringResolutionIsNotFollowedBack() throws {
        // `..` goes back to the directory walked through, checked by identity: a location that left the root
        // does not climb from where it landed.
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.makeDirectory(root + "/a/b/c")
        var location = try tree.root.locate("a/b/c")
        try FileManager.default.moveItem(atPath: root + "/a/b", toPath: tree.base + "/moved")
        #expect(throws: FileError.Code.notFound) { try location.follow(Array("../..".utf8)[...]) }
    }

    @Test func nulByteIsInvalid() throws {
        let tree = try Tree()
        defer { tree.remove() }
        #expect(throws: FileError.Code.invalidPath) { try tree.root.realPath("a\u{0}b") }
        #expect(throws: FileError.Code.invalidPath) { try tree.root.realPath("\u{0}/../..") }
    }

    @Test func unicodeIsComparedAsBytes() throws {
        // "/" + U+0338 is one Character in Swift, but the kernel splits at the slash, so this is `..`.
        let tree = try Tree(rootName: "caf\u{E9}")
        defer { tree.remove() }
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("../\u{338}x") }
        #expect(try tree.root.realPath("..\u{338}") == tree.root.path + "/..\u{338}")
        // A decomposed sibling is canonically equivalent to the root's name, but another directory.
        try tree.makeDirectory(tree.base + "/cafe\u{301}")
        #expect(throws: FileError.Code.escapesRoot) { try tree.root.realPath("../cafe\u{301}/x") }
        #expect(try tree.root.realPath("cafe\u{301}") == tree.root.path + "/cafe\u{301}")
    }
}
