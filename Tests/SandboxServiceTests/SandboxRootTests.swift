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
            #expect(try tree.root.resolve(request) == tree.root.path, "\(request)")
        }
    }

    @Test func absolutePathsAreTakenRelativeToTheRoot() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        #expect(try tree.root.resolve("/etc/passwd") == root + "/etc/passwd")
        #expect(try tree.root.resolve("//x") == root + "/x")
        #expect(try tree.root.resolve("///a//b//") == root + "/a/b")
    }

    @Test func dotsAndTrailingSlashesAreNormalized() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.makeDirectory(root + "/dir")
        #expect(try tree.root.resolve("dir/") == root + "/dir")
        #expect(try tree.root.resolve("a/./b") == root + "/a/b")
        #expect(try tree.root.resolve("a/../b") == root + "/b")
        #expect(try tree.root.resolve("new/dir/../file.txt") == root + "/new/file.txt")
        #expect(try tree.root.resolve("../root/x") == root + "/x")
    }

    @Test(arguments: ["..", "../", "/..", "a/../../x", "../../../../etc/passwd", "dir/../../root-x", "a/b/../../../x"])
    func dotDotCannotClimbOut(_ request: String) throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeDirectory(tree.root.path + "/dir")
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve(request) }
    }

    @Test func siblingWithTheRootAsPrefixIsOutside() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeDirectory(tree.base + "/root-evil")
        try tree.makeFile(tree.base + "/root-evil/x")
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("../root-evil/x") }
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("../root-evil") }
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("../rootx") }
    }

    @Test func symlinkToSystemDirectoryEscapes() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.link(tree.root.path + "/etc", to: "/etc")
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("etc") }
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("/etc/passwd") }
    }

    @Test func symlinkToFileOutsideEscapes() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeFile(tree.base + "/secret.txt")
        try tree.link(tree.root.path + "/innocent.txt", to: "../secret.txt")
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("innocent.txt") }
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
        #expect(try tree.root.resolve("relative/f.txt") == root + "/data/real/f.txt")
        #expect(try tree.root.resolve("absolute/f.txt") == root + "/data/real/f.txt")
        #expect(try tree.root.resolve("chain") == root + "/data/real")
        #expect(try tree.root.resolve("data/up/data") == root + "/data")
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("data/up/..") }
    }

    @Test func newFileUnderSymlinkedOutsideDirectoryEscapes() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeDirectory(tree.base + "/outside")
        try tree.link(tree.root.path + "/ext", to: tree.base + "/outside")
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("ext/new/file.txt") }
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("ext/") }
    }

    @Test func dotDotAppliesToTheResolvedComponent() throws {
        // Lexically `out/..` is the root; for realpath it is the parent of where `out` points.
        let tree = try Tree()
        defer { tree.remove() }
        try tree.makeDirectory(tree.base + "/outside/deeper")
        try tree.link(tree.root.path + "/out", to: tree.base + "/outside/deeper")
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("out/..") }
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("out/../../root-evil") }
        #expect(try tree.root.resolve("out/../../root/x") == tree.root.path + "/x")
    }

    @Test func rootReachedThroughSymlinkIsCanonicalized() throws {
        let tree = try Tree(rootName: "real")
        defer { tree.remove() }
        try tree.link(tree.base + "/alias", to: "real")
        let aliased = try SandboxRoot(path: tree.base + "/alias/")
        #expect(aliased.path == tree.base + "/real")
        #expect(try aliased.resolve("x") == tree.base + "/real/x")
        #expect(try aliased.resolve("../alias/x") == tree.base + "/real/x")
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

    @Test func symlinkLoopsTerminateAndStayConfined() throws {
        let tree = try Tree()
        defer { tree.remove() }
        let root = tree.root.path
        try tree.link(root + "/loop", to: "loop")
        try tree.link(root + "/ping", to: "pong")
        try tree.link(root + "/pong", to: "ping")
        try tree.link(root + "/etc", to: "/etc")
        // As realpath: the path through the loop is left unresolved; the kernel will report ELOOP.
        #expect(try tree.root.resolve("loop") == root + "/loop")
        #expect(try tree.root.resolve("ping/x/./y") == root + "/ping/x/y")
        // realpath would collapse `..` lexically across the loop and land on the `etc` link unchecked.
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("loop/../etc/passwd") }
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("pong/../../x") }
    }

    @Test func repeatedLinkIsResolvedOnce() throws {
        // Far more hops than the 40-link budget, but it is the same link each time.
        let tree = try Tree()
        defer { tree.remove() }
        try tree.link(tree.root.path + "/self", to: ".")
        let request = Array(repeating: "self", count: 100).joined(separator: "/") + "/f"
        #expect(try tree.root.resolve(request) == tree.root.path + "/f")
    }

    @Test func nulByteIsInvalid() throws {
        let tree = try Tree()
        defer { tree.remove() }
        #expect(throws: SandboxRoot.Error.invalidPath) { try tree.root.resolve("a\u{0}b") }
        #expect(throws: SandboxRoot.Error.invalidPath) { try tree.root.resolve("\u{0}/../..") }
    }

    @Test func unicodeIsComparedAsBytes() throws {
        // "/" + U+0338 is one Character in Swift, but the kernel splits at the slash, so this is `..`.
        let tree = try Tree(rootName: "caf\u{E9}")
        defer { tree.remove() }
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("../\u{338}x") }
        #expect(try tree.root.resolve("..\u{338}") == tree.root.path + "/..\u{338}")
        // A decomposed sibling is canonically equivalent to the root's name, but another directory.
        try tree.makeDirectory(tree.base + "/cafe\u{301}")
        #expect(throws: SandboxRoot.Error.escapesRoot) { try tree.root.resolve("../cafe\u{301}/x") }
        #expect(try tree.root.resolve("cafe\u{301}") == tree.root.path + "/cafe\u{301}")
    }
}
