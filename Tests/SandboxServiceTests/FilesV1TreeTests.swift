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

/// The code of the `FileError` that `body` throws; nil when it succeeds.
private func code(_ body: () throws -> some Any) -> FileError.Code? {
    do {
        _ = try body()
        return nil
    } catch {
        return (error as? FileError)?.code
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
        try fixture.link("loop", to: "loop")
        try fixture.link("to-escaping", to: "escaping")
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
        #expect(code { try fixture.tree.read("absent") } == .notFound)
        #expect(code { try fixture.tree.read("f.txt/below") } == .notFound)
        #expect(code { try fixture.tree.read("../outside/secret.txt") } == .escapesRoot)
        try fixture.link("out", to: fixture.directory.file("outside"))
        #expect(code { try fixture.tree.read("out/secret.txt") } == .escapesRoot)
        #expect(code { try fixture.tree.read("a\0b") } == .invalidPath)
        #expect(mkfifo(fixture.root + "/fifo", 0o600) == 0)
        #expect(code { try fixture.tree.read("fifo") } == .unsupportedType)
        #expect(mknod(fixture.root + "/socket", S_IFSOCK | 0o600, 0) == 0)
        #expect(code { try fixture.tree.read("socket") } == .unsupportedType)
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

        #expect(code { try fixture.tree.destination("a") } == .isADirectory)
        #expect(code { try fixture.tree.destination("") } == .isADirectory)
        #expect(code { try fixture.tree.destination("a/b/c.txt/d") } == .notADirectory)
        #expect(code { try fixture.tree.destination("../escaped.txt") } == .escapesRoot)
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
        #expect(code { try fixture.tree.remove("f.txt", recursive: false) } == .notFound)
        try fixture.tree.remove("empty", recursive: false)
        #expect(!fixture.exists("empty"))
        #expect(code { try fixture.tree.remove("d", recursive: false) } == .notEmpty)
        #expect(fixture.exists("d/e/f.txt"))
        try fixture.tree.remove("d", recursive: true)
        #expect(!fixture.exists("d"))
        #expect(code { try fixture.tree.remove("../outside", recursive: true) } == .escapesRoot)
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
            #expect(code { try fixture.tree.remove(path, recursive: false) } == .isRoot)
        }
        try fixture.tree.remove("/", recursive: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.root).isEmpty)
        var info = stat()
        #expect(stat(fixture.root, &info) == 0)
    }

    @Test("the legacy listing describes entries as the v1 one does, links confined first")
    func legacyListingIsTheSame() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("adir/inner.txt")
        try fixture.link("escaping-file", to: fixture.directory.file("outside/secret.txt"))
        try fixture.link("inside-file", to: "adir/inner.txt")
        guard case .directory(_, let entries) = try fixture.tree.read("") else {
            Issue.record("the root is not listed as a directory")
            return
        }
        #expect(try fixture.tree.list("") == entries)
        #expect(entries.map(\.name) == ["adir", "inside-file"])
        #expect(code { try fixture.tree.list("adir/inner.txt") } == .notADirectory)
        #expect(code { try fixture.tree.list("absent") } == .notFound)
        #expect(code { try fixture.tree.list("escaping-file") } == .escapesRoot)
    }

    @Test("a directory swapped for a symlink after a write was resolved is not followed")
    func writeUsesTheResolvedDirectory() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("d/keep.txt")
        let destination = try fixture.tree.destination("d/new/f.txt")
        try FileManager.default.moveItem(atPath: fixture.root + "/d", toPath: fixture.root + "/d.real")
        try fixture.link("d", to: fixture.directory.file("outside"))
        let file = try fixture.tree.create(destination, permissions: 0o644)
        try Array("written".utf8).withUnsafeBytes { try file.write($0) }
        try file.commit()
        #expect(try String(contentsOfFile: fixture.root + "/d.real/new/f.txt", encoding: .utf8) == "written")
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: fixture.directory.file("outside")) == ["secret.txt"])
    }

    @Test("an aborted write removes the directories it created, and only those")
    func abortRemovesCreatedParents() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("a/keep.txt")
        let file = try fixture.tree.create(try fixture.tree.destination("a/b/c/f.txt"), permissions: 0o644)
        #expect(fixture.exists("a/b/c"))
        file.abort()
        #expect(!fixture.exists("a/b"))
        #expect(fixture.exists("a/keep.txt"))
    }

    @Test("a write that cannot be reached by path, or names too long, is refused before anything is created")
    func tooLongDestinations() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        let deep = Array(repeating: String(repeating: "d", count: 200), count: 25).joined(separator: "/") + "/f"
        #expect(code { try fixture.tree.destination(deep) } == .nameTooLong)
        #expect(code { try fixture.tree.destination("a/" + String(repeating: "n", count: 256)) } == .nameTooLong)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.root).isEmpty)
        try fixture.put("a/" + String(repeating: "n", count: 255), "longest name")
    }

    @Test("reads, writes and removals through a chain of more than 40 links are refused")
    func tooManyLinks() throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        try fixture.write("d/f.txt", "inside")
        try fixture.link("out", to: fixture.directory.file("outside"))
        for n in 1...41 { try fixture.link("l\(n)", to: ".") }
        let chain = (1...41).map { "l\($0)" }.joined(separator: "/")
        #expect(code { try fixture.tree.read(chain + "/d/f.txt") } == .tooManyLinks)
        #expect(code { try fixture.tree.read(chain + "/out/secret.txt") } == .tooManyLinks)
        #expect(code { try fixture.tree.destination(chain + "/out/new.txt") } == .tooManyLinks)
        #expect(code { try fixture.tree.remove(chain + "/out/secret.txt", recursive: false) } == .tooManyLinks)
        #expect(code { try fixture.tree.exists(chain + "/out/secret.txt") } == .tooManyLinks)
        #expect(code { try fixture.tree.workingDirectory(chain + "/out") } == .tooManyLinks)
        #expect(FileManager.default.fileExists(atPath: fixture.directory.file("outside/secret.txt")))
    }
}
