import Foundation
import Glibc
import Testing

@testable import SandboxService

/// `FileTree` on a real directory: a root under a fresh temp dir, with an `outside` sibling symlinks can point to.
private struct Fixture {
    let directory: TemporaryDirectory
    let tree: FileTree
    var root: String { tree.root.path }

    init() throws {
        directory = try TemporaryDirectory("sandboxd-v1-tree")
        tree = FileTree(root: try SandboxRoot(path: directory.file("root")))
        try directory.write("outside/secret.txt", "secret")
    }

    func write(_ relative: String, _ contents: String = "x", mode: Int = 0o644) throws {
        try directory.write("root/" + relative, contents, mode: mode)
    }

    func link(_ relative: String, to target: String) throws {
        try FileManager.default.createSymbolicLink(atPath: root + "/" + relative, withDestinationPath: target)
    }

    func exists(_ relative: String) -> Bool {
        var info = stat()
        return lstat(root + "/" + relative, &info) == 0
    }

    /// Writes `contents` to `path` through `FileTree.create` and commits.
    func put(_ path: String, _ contents: String, permissions: UInt32 = 0o644) throws {
        let file = try tree.create(try tree.destination(path), permissions: permissions)
        try Array(contents.utf8).withUnsafeBytes { try file.write($0) }
        try file.commit()
    }
}

@Suite("v1 files: FileTree")
struct FilesV1TreeTests {
    @Test("a directory lists its entries sorted by name, links described by their targets")
    func listing() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("b.txt", "bb", mode: 0o600)
        try fixture.write("adir/inner.txt")
        try fixture.write("Z.txt")
        try fixture.link("link-to-dir", to: "adir")
        try fixture.link("escaping", to: fixture.directory.file("outside"))
        try fixture.link("dangling", to: "nowhere")
        guard case .directory(let status, let entries) = try fixture.tree.read("") else {
            Issue.record("the root is not listed as a directory")
            return
        }
        #expect(status.isDirectory)
        #expect(entries.map(\.name) == ["Z.txt", "adir", "b.txt", "link-to-dir"])
        #expect(entries[2].status.size == 2)
        #expect(entries[2].status.permissions == 0o600)
        #expect(!entries[2].status.isDirectory)
        #expect(entries[3].status.isDirectory)
    }

    @Test("a file is opened for reading; absent paths, escapes and special files are refused")
    func read() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("f.txt", "hello")
        guard case .file(let fd, let status) = try fixture.tree.read("/f.txt") else {
            Issue.record("f.txt is not read as a file")
            return
        }
        close(fd)
        #expect(status.size == 5)
        #expect(throws: FileTree.Error.notFound) { try fixture.tree.read("absent") }
        #expect(throws: FileTree.Error.notFound) { try fixture.tree.read("f.txt/below") }
        #expect(throws: FileTree.Error.escapesRoot) { try fixture.tree.read("../outside/secret.txt") }
        try fixture.link("out", to: fixture.directory.file("outside"))
        #expect(throws: FileTree.Error.escapesRoot) { try fixture.tree.read("out/secret.txt") }
        #expect(throws: FileTree.Error.invalidPath) { try fixture.tree.read("a\0b") }
        #expect(mkfifo(fixture.root + "/fifo", 0o600) == 0)
        #expect(throws: FileTree.Error.unsupportedType) { try fixture.tree.read("fifo") }
        #expect(mknod(fixture.root + "/socket", S_IFSOCK | 0o600, 0) == 0)
        #expect(throws: FileTree.Error.unsupportedType) { try fixture.tree.read("socket") }
    }

    @Test("writes are atomic, create parents and get exactly the permissions asked for")
    func write() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.put("a/b/c.txt", "one", permissions: 0o777)
        var info = stat()
        #expect(stat(fixture.root + "/a/b/c.txt", &info) == 0)
        #expect(info.st_mode & 0o7777 == 0o777, "the umask must not apply")
        try fixture.put("a/b/c.txt", "two", permissions: 0o600)
        #expect(try String(contentsOfFile: fixture.root + "/a/b/c.txt", encoding: .utf8) == "two")
        #expect(stat(fixture.root + "/a/b/c.txt", &info) == 0 && info.st_mode & 0o7777 == 0o600)

        let abandoned = try fixture.tree.create(try fixture.tree.destination("a/b/c.txt"), permissions: 0o644)
        try Array("three".utf8).withUnsafeBytes { try abandoned.write($0) }
        abandoned.abort()
        #expect(try String(contentsOfFile: fixture.root + "/a/b/c.txt", encoding: .utf8) == "two")
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.root + "/a/b") == ["c.txt"])

        #expect(throws: FileTree.Error.isADirectory) { try fixture.tree.destination("a") }
        #expect(throws: FileTree.Error.isADirectory) { try fixture.tree.destination("") }
        #expect(throws: FileTree.Error.notADirectory) {
            _ = try fixture.tree.create(try fixture.tree.destination("a/b/c.txt/d"), permissions: 0o644)
        }
        #expect(throws: FileTree.Error.escapesRoot) { try fixture.tree.destination("../escaped.txt") }
    }

    @Test("remove: files, empty directories, and non-empty ones only when recursive")
    func remove() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("f.txt")
        try fixture.write("d/e/f.txt")
        try FileManager.default.createDirectory(atPath: fixture.root + "/empty", withIntermediateDirectories: true)
        try fixture.tree.remove("f.txt", recursive: false)
        #expect(!fixture.exists("f.txt"))
        #expect(throws: FileTree.Error.notFound) { try fixture.tree.remove("f.txt", recursive: false) }
        try fixture.tree.remove("empty", recursive: false)
        #expect(!fixture.exists("empty"))
        #expect(throws: FileTree.Error.notEmpty) { try fixture.tree.remove("d", recursive: false) }
        #expect(fixture.exists("d/e/f.txt"))
        try fixture.tree.remove("d", recursive: true)
        #expect(!fixture.exists("d"))
        #expect(throws: FileTree.Error.escapesRoot) { try fixture.tree.remove("../outside", recursive: true) }
    }

    @Test("recursive removal removes links without following them")
    func removeDoesNotFollowLinks() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("d/keep-out/x.txt")
        try fixture.link("d/out", to: fixture.directory.file("outside"))
        try fixture.link("d/secret", to: fixture.directory.file("outside/secret.txt"))
        try fixture.tree.remove("d", recursive: true)
        #expect(!fixture.exists("d"))
        #expect(FileManager.default.fileExists(atPath: fixture.directory.file("outside/secret.txt")))
    }

    @Test("the root is never removed: a conflict without recursive, emptied with it")
    func removeRoot() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("f.txt")
        try fixture.write("d/g.txt")
        for path in ["", "/", ".", "d/.."] {
            #expect(throws: FileTree.Error.isRoot) { try fixture.tree.remove(path, recursive: false) }
        }
        try fixture.tree.remove("/", recursive: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.root).isEmpty)
        var info = stat()
        #expect(stat(fixture.root, &info) == 0)
    }
}
