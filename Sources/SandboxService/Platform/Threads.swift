import CSandboxd
import Glibc

/// Starts a detached thread running `body` (`pthread_create`; Foundation's Thread is not needed for this).
func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        let name: String
        init(_ body: @escaping @Sendable () -> Void, _ name: String) {
            self.body = body
            self.name = name
        }
    }
    let context = Unmanaged.passRetained(Box(body, name)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { context in
            let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
            csandboxd_name_thread(box.name)
            box.body()
            return nil
        }, context)
    precondition(result == 0, "cannot start thread \(name): \(Errno(result))")
    pthread_detach(thread)
}

/// A counting semaphore (POSIX `sem_t`), for a thread that must sleep until woken.
final class Semaphore: @unchecked Sendable {
    // sem_post/sem_wait are async-signal-safe and thread-safe; the sem_t lives at a stable heap address.
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(semaphore, 0, 0) }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func signal() { sem_post(semaphore) }

    func wait() {
        _ = try? systemCall { sem_wait(semaphore) }
    }
}

/// A `pthread_rwlock_t` at a stable heap address: shared holders run in parallel, an exclusive one alone.
final class ReadWriteLock: @unchecked Sendable {
    // pthread_rwlock functions are thread-safe; the lock lives at a stable address for the object's lifetime.
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    init() { pthread_rwlock_init(lock, nil) }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func lockShared() { pthread_rwlock_rdlock(lock) }

    /// Takes the lock exclusively if nobody holds it; never waits.
    func tryLockExclusive() -> Bool { pthread_rwlock_trywrlock(lock) == 0 }

    func unlock() { pthread_rwlock_unlock(lock) }
}
