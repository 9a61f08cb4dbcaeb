//! Integration tests of the core crate (one binary, modules by topic).

mod concurrency;
mod conformance;
mod contract;
mod fuzz;
mod key_values;
mod rule_lookup;

/// Polls a future that must be ready at once (the memory store never waits).
pub(crate) fn ready_now<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("a memory-store future was not ready at once"),
    }
}
