//! Writes only while the Lease is held: a layer of the operator's Kubernetes client that refuses
//! every write (POST, PUT, PATCH, DELETE) once this replica's leadership has run out, and cuts a
//! write off at the moment it runs out.
//!
//! Leader election ([`crate::leader`]) moves the fence forward after each renewal, to the end of
//! the renew deadline counted from when that renewal was sent; a follower takes over no earlier
//! than the lease duration after it saw that renewal, a third of the duration later. So a leader
//! whose connection to the API server hangs stops writing before anyone else may start, even
//! when the write was already waiting in the client (retries of 429/503/504 included: the
//! layer sits outside them). Reads pass: a follower keeps its caches current.
//!
//! The Lease itself is written with a client without this layer.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use http::{Method, Request};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// Until when this replica may write.
#[derive(Clone, Debug)]
pub struct Fence(Arc<Mutex<Hold>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Leader election is off: the only replica always writes.
    Always,
    /// Leading until then (a monotonic instant).
    Until(Instant),
    /// Not leading.
    No,
}

/// Why the fence refused or cut off a write.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("not the leader: the write was not sent (the Lease is not held)")]
    NotLeader,
    #[error("the Lease ran out while the write was in flight: it was cut off")]
    RanOut,
}

impl Fence {
    /// Leader election off: every write passes.
    pub fn always() -> Self {
        Fence(Arc::new(Mutex::new(Hold::Always)))
    }

    /// Closed until leadership is won.
    pub fn closed() -> Self {
        Fence(Arc::new(Mutex::new(Hold::No)))
    }

    pub fn hold(&self) -> Hold {
        *self.0.lock().expect("fence lock")
    }

    /// Whether a write may start now.
    pub fn open(&self) -> bool {
        match self.hold() {
            Hold::Always => true,
            Hold::Until(until) => Instant::now() < until,
            Hold::No => false,
        }
    }

    /// Leading until `until` (set by leader election after each renewal).
    pub fn hold_until(&self, until: Instant) {
        let mut hold = self.0.lock().expect("fence lock");
        if *hold != Hold::Always {
            *hold = Hold::Until(until);
        }
    }

    /// Not leading any more.
    pub fn close(&self) {
        let mut hold = self.0.lock().expect("fence lock");
        if *hold != Hold::Always {
            *hold = Hold::No;
        }
    }
}

/// The client layer; see the module documentation.
#[derive(Clone, Debug)]
pub struct FenceLayer(pub Fence);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S, B> Service<Request<B>> for Fenced<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let until = match (is_write(req.method()), self.fence.hold()) {
            (false, _) | (true, Hold::Always) => None,
            (true, Hold::Until(until)) if Instant::now() < until => Some(until),
            (true, _) => return Box::pin(std::future::ready(Err(Refused::NotLeader.into()))),
        };
        let sent = self.inner.call(req);
        Box::pin(async move {
            match until {
                None => sent.await.map_err(Into::into),
                Some(until) => match tokio::time::timeout_at(until, sent).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => Err(Refused::RanOut.into()),
                },
            }
        })
    }
}

/// Whether a kube error is the fence's refusal (not an API failure worth retrying or reporting).
pub fn refused(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Service(s) if s.downcast_ref::<Refused>().is_some())
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use tower::{ServiceExt, service_fn};

    use super::*;

    /// A service that answers after `delay`, counting the calls that reached it.
    fn slow(
        delay: Duration,
        calls: Arc<Mutex<u32>>,
    ) -> impl Service<Request<()>, Response = &'static str, Error = Infallible, Future: Send + 'static> + Clone
    {
        service_fn(move |_req: Request<()>| {
            let calls = calls.clone();
            async move {
                *calls.lock().unwrap() += 1;
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>("done")
            }
        })
    }

    fn req(method: Method) -> Request<()> {
        Request::builder().method(method).uri("/x").body(()).unwrap()
    }

    async fn send(
        svc: &Fenced<
            impl Service<Request<()>, Response = &'static str, Error = Infallible, Future: Send + 'static> + Clone,
        >,
        method: Method,
    ) -> Result<&'static str, String> {
        svc.clone().oneshot(req(method)).await.map_err(|e| e.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn writes_pass_only_while_the_lease_is_held() {
        let calls = Arc::new(Mutex::new(0));
        let fence = Fence::closed();
        let svc = FenceLayer(fence.clone()).layer(slow(Duration::from_millis(10), calls.clone()));

        // Not leading: reads pass, writes are refused before they are sent.
        assert_eq!(send(&svc, Method::GET).await, Ok("done"));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(send(&svc, m).await, Err(Refused::NotLeader.to_string()));
        }
        assert_eq!(*calls.lock().unwrap(), 1, "no write reached the API");

        // Leading for a second: a quick write passes.
        fence.hold_until(Instant::now() + Duration::from_secs(1));
        assert!(fence.open());
        assert_eq!(send(&svc, Method::POST).await, Ok("done"));

        // Past the hold, the same write is refused again.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!fence.open());
        assert_eq!(
            send(&svc, Method::POST).await,
            Err(Refused::NotLeader.to_string())
        );
        fence.close();
        assert_eq!(fence.hold(), Hold::No);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_in_flight_is_cut_off_when_the_lease_runs_out() {
        let calls = Arc::new(Mutex::new(0));
        let fence = Fence::closed();
        let svc = FenceLayer(fence.clone()).layer(slow(Duration::from_secs(60), calls.clone()));
        fence.hold_until(Instant::now() + Duration::from_secs(5));
        let started = Instant::now();
        assert_eq!(send(&svc, Method::POST).await, Err(Refused::RanOut.to_string()));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "cut off at the end of the hold"
        );
        // A read is not cut off.
        assert_eq!(send(&svc, Method::GET).await, Ok("done"));
    }

    #[tokio::test]
    async fn always_never_refuses() {
        let fence = Fence::always();
        fence.close();
        fence.hold_until(Instant::now());
        assert_eq!(fence.hold(), Hold::Always);
        let svc = FenceLayer(fence).layer(slow(Duration::ZERO, Default::default()));
        assert_eq!(send(&svc, Method::DELETE).await, Ok("done"));
    }

    #[test]
    fn refusals_are_recognised_in_kube_errors() {
        let e = kube::Error::Service(Box::new(Refused::NotLeader));
        assert!(refused(&e));
        let other = kube::Error::Service("connection reset".into());
        assert!(!refused(&other));
    }
}
