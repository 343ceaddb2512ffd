//! Waiting for asynchronous work, the same way on every target.
//!
//! Device readback and device set-up are asynchronous in WebGPU: in a browser the result
//! arrives when a JavaScript promise resolves, and the page must not block waiting for
//! it. So the async form of an operation is its only implementation (`to_vec_async`,
//! `download_async`, `epoch_async`, ...), and the blocking form is [`block_on`] of it:
//! natively that waits (`pollster`); in the browser it polls once and, when the result is
//! not ready at once (a GPU readback), returns an error that names the async form instead
//! of hanging the page or panicking. Work that completes at once (the CPU backend) runs
//! the same through both forms everywhere.

use std::future::Future;
use std::pin::Pin;
#[cfg(target_arch = "wasm32")]
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

#[cfg(any(feature = "wgpu", test))]
pub(crate) use channel::oneshot;

/// A boxed future, the return type of the async methods of object-safe traits
/// ([`crate::Backend::download_async`]). Not `Send`: browser futures are not.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Wait for `fut` and return its result. `op` names the blocking call and `use_instead`
/// its async form, for the error the browser gets when the result is not ready at once.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<T>(
    op: &'static str,
    use_instead: &'static str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let _ = (op, use_instead);
    pollster::block_on(fut)
}

/// Wait for `fut` and return its result. `op` names the blocking call and `use_instead`
/// its async form, for the error the browser gets when the result is not ready at once.
#[cfg(target_arch = "wasm32")]
pub fn block_on<T>(
    op: &'static str,
    use_instead: &'static str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    // A browser page cannot block: poll once, and if the work is still pending (a GPU
    // readback), say which call to await instead.
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(not_ready(op, use_instead)),
    }
}

/// The error of a blocking call that cannot complete in a browser.
pub fn not_ready(op: &'static str, use_instead: &'static str) -> Error {
    Error::invalid(
        op,
        format!(
            "a blocking call cannot wait for the GPU in a browser (WebGPU delivers results \
             asynchronously); use `{use_instead}(...).await` instead"
        ),
    )
}

/// A channel for one value (the wgpu readback's; the CPU backend needs none).
#[cfg(any(feature = "wgpu", test))]
mod channel {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    struct Slot<T> {
        value: Option<T>,
        closed: bool,
        waker: Option<Waker>,
    }

    /// The sending half of a [`oneshot`] channel. Dropping it unsent closes the channel.
    pub(crate) struct Sender<T>(Arc<Mutex<Slot<T>>>);

    /// The receiving half of a [`oneshot`] channel: a future of `Some(value)`, or `None`
    /// when the sender was dropped without sending.
    pub(crate) struct Receiver<T>(Arc<Mutex<Slot<T>>>);

    /// A channel for one value, whose receiver is a future: bridges a callback (wgpu's
    /// `map_async`, a browser promise) to `.await`.
    pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
        let slot = Arc::new(Mutex::new(Slot {
            value: None,
            closed: false,
            waker: None,
        }));
        (Sender(slot.clone()), Receiver(slot))
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    impl<T> Sender<T> {
        /// Deliver the value and wake the receiver.
        pub(crate) fn send(self, value: T) {
            lock(&self.0).value = Some(value);
            // Drop wakes the receiver.
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            let waker = {
                let mut s = lock(&self.0);
                s.closed = true;
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    impl<T> Future for Receiver<T> {
        type Output = Option<T>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            let mut s = lock(&self.0);
            if let Some(v) = s.value.take() {
                return Poll::Ready(Some(v));
            }
            if s.closed {
                return Poll::Ready(None);
            }
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oneshot_delivers_a_value_sent_from_another_thread() {
        let (tx, rx) = oneshot();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7);
        });
        let got = block_on("test", "test_async", async { Ok(rx.await) }).unwrap();
        t.join().unwrap();
        assert_eq!(got, Some(7));
    }

    #[test]
    fn oneshot_dropped_unsent_gives_none() {
        let (tx, rx) = oneshot::<u8>();
        drop(tx);
        assert_eq!(block_on("t", "t", async { Ok(rx.await) }).unwrap(), None);
    }

    #[test]
    fn not_ready_names_the_async_call() {
        let e = not_ready("to_vec", "Tensor::to_vec_async").to_string();
        assert!(
            e.contains("to_vec") && e.contains("Tensor::to_vec_async"),
            "{e}"
        );
    }
}
