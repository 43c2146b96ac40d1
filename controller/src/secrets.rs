//! Secrets: the argon2id hashes of meeting passwords, host keys and registrants' keys
//! (made and checked off the async threads: argon2 is deliberately slow), comparison in
//! constant time, and new random keys. Below `auth` (who may do what), `oidc` (sign-in)
//! and the calls that make keys (`meetings`, `registration`); it needs only `error`.
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::ApiError;

pub(crate) fn hash_secret(secret: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing failed: {e}")))
}

pub(crate) fn verify_secret(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Runs argon2 off the async threads: it is deliberately slow, and each hash takes 19
/// MiB. It runs on a pool of its own, one thread per core: a burst of meetings created
/// (or a flood of wrong passwords) waits its turn and costs time, not memory. On
/// tokio's blocking threads (one per hash at once, up to 512, each keeping its own
/// allocator arena), 2,000 meetings created 32 at a time left the controller at 6.6 GB
/// resident; on this pool, 450 MB.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    type Job = Box<dyn FnOnce() + Send>;
    static POOL: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job, not to run it.
                        let job = rx.lock().map(|rx| rx.recv());
                        match job {
                            // A job that panics fails alone (its caller sees an error).
                            Ok(Ok(job)) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            _ => return,
                        }
                    }
                })
                .expect("an argon2 thread");
        }
        tx
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.send(Box::new(move || {
        // Its caller gave up (a timed-out request): no hash for nobody.
        if !tx.is_closed() {
            let _ = tx.send(f());
        }
    }))
    .map_err(|_| ApiError::Internal("the hashing threads are gone".into()))?;
    rx.await
        .map_err(|_| ApiError::Internal("a hashing job failed".into()))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A host key: 32 characters of a-z and 0-9 from the OS's generator.
pub(crate) fn random_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hashing_runs_at_most_one_job_per_core_at_once_and_a_panicking_job_fails_alone() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs = (0..cores * 4).map(|i| {
            let (running, most) = (running.clone(), most.clone());
            blocking(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
                i
            })
        });
        let done = futures::future::join_all(jobs).await;
        assert_eq!(
            done.into_iter().map(Result::unwrap).sum::<usize>(),
            (0..cores * 4).sum::<usize>()
        );
        assert!(
            most.load(Ordering::SeqCst) <= cores,
            "{most:?} at once on {cores} cores"
        );
        let failed = blocking(|| -> usize { panic!("a job that panics") }).await;
        assert!(failed.is_err());
        // The pool goes on.
        let hash = blocking(|| hash_secret("s3cret")).await.unwrap().unwrap();
        assert!(
            blocking(move || verify_secret("s3cret", &hash))
                .await
                .unwrap()
        );
    }
}
