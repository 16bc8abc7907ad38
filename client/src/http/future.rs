//! The named response future of [`RateLimit`](super::RateLimit).

use super::caller::Caller;
use super::decision::Verdict;
use super::deferred::Deferred;
use super::headers::{self, RateHeaders};
use axum::body::Body;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_service::Service;

pub(crate) type Deciding = Pin<Box<dyn Future<Output = Verdict> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`]: decides, then runs the inner service (or
    /// answers 429), then adds the rate-limit headers.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Deciding {
            deciding: Deciding,
            service: Option<S>,
            request: Option<Request<B>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            headers: Option<RateHeaders>,
            deferred: Option<Box<Deferred>>,
        },
        Answered {
            response: Option<Response<Body>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn deciding(deciding: Deciding, service: S, request: Request<B>) -> Self {
        Self {
            state: State::Deciding {
                deciding,
                service: Some(service),
                request: Some(request),
            },
        }
    }

    pub(crate) fn calling(future: S::Future, headers: Option<RateHeaders>) -> Self {
        Self {
            state: State::Calling {
                future,
                headers,
                deferred: None,
            },
        }
    }

    /// The response future of a request decided already: `service` (polled ready) is
    /// called now if the verdict serves it.
    pub(crate) fn decided(verdict: Verdict, service: &mut S, request: Request<B>) -> Self {
        Self {
            state: after(verdict, service, request),
        }
    }

    pub(crate) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }
}

/// What follows a verdict: calling `service` with the decisions in the request's
/// [`Caller`], or the answer.
fn after<S, B>(verdict: Verdict, service: &mut S, mut request: Request<B>) -> State<S, B>
where
    S: Service<Request<B>>,
{
    match verdict {
        Verdict::Serve(headers, taken, deferred) => {
            if let Some(caller) = request.extensions_mut().get_mut::<Caller>() {
                if caller.decisions.is_empty() {
                    caller.decisions = taken;
                } else {
                    caller.decisions.extend(taken);
                }
            }
            State::Calling {
                future: service.call(request),
                headers,
                deferred,
            }
        }
        Verdict::Answer(response) => State::Answered {
            response: Some(response),
        },
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProjection::Deciding {
                    deciding,
                    service,
                    request,
                } => {
                    let verdict = match deciding.as_mut().poll(cx) {
                        Poll::Ready(verdict) => verdict,
                        Poll::Pending => return Poll::Pending,
                    };
                    match (verdict, service.take(), request.take()) {
                        (verdict @ Verdict::Serve(..), Some(mut service), Some(request)) => {
                            state.set(after(verdict, &mut service, request));
                        }
                        (Verdict::Answer(response), _, _) => {
                            state.set(State::Answered {
                                response: Some(response),
                            });
                        }
                        // Polled again after completion: nothing left to do.
                        _ => return Poll::Pending,
                    }
                }
                StateProjection::Calling {
                    future,
                    headers,
                    deferred,
                } => {
                    let mut response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Pending => return Poll::Pending,
                    };
                    let headers = match deferred.take() {
                        Some(deferred) => deferred.settle(response.status(), headers.take()),
                        None => headers.take(),
                    };
                    if let Some(headers) = headers {
                        headers::merge(response.headers_mut(), headers);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProjection::Answered { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
