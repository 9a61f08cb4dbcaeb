//! Delivery: each channel tried with a time limit, retried with backoff.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;

use crate::alert::Alert;
use crate::settings::{AlertSettings, Email, Webhook};

/// The header carrying a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "x-ratethrottle-signature";
/// The header carrying the Unix time a webhook body was signed at.
pub const TIMESTAMP_HEADER: &str = "x-ratethrottle-timestamp";

/// `sha256=<hex>`: the HMAC-SHA256 of `<timestamp>.<body>` under `secret`, as a webhook's
/// receiver computes it to check the signature.
///
/// ```
/// let signature = ratethrottle_alert::sign("s3cret", "1700000000", br#"{"event":"x"}"#);
/// assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
/// ```
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    // An HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// The channels of some settings, ready to send.
pub(crate) struct Channels {
    http: HttpClient,
    settings: AlertSettings,
}

impl Channels {
    pub(crate) fn new(settings: AlertSettings) -> Result<Self, String> {
        // HTTPS with rustls on ring (the workspace's provider) and the system's roots.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("cannot set up TLS for alerts: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Channels { http, settings })
    }

    /// Sends `alert` to every channel at once: each channel's name and its outcome.
    pub(crate) async fn deliver(&self, alert: &Alert) -> Vec<(&'static str, Result<(), String>)> {
        let s = &self.settings;
        let slack = async {
            match &s.slack {
                Some(slack) => {
                    let body = alert.slack_body(slack);
                    Some((
                        "slack",
                        self.retried(|| self.post(&slack.webhook_url, &body, &[]))
                            .await,
                    ))
                }
                None => None,
            }
        };
        let webhook = async {
            match &s.webhook {
                Some(webhook) => Some((
                    "webhook",
                    self.retried(|| self.webhook(webhook, alert)).await,
                )),
                None => None,
            }
        };
        let pagerduty = async {
            match &s.pagerduty {
                Some(pagerduty) => {
                    let body = alert.pagerduty_body(pagerduty);
                    Some((
                        "pagerduty",
                        self.retried(|| self.post(&pagerduty.url, &body, &[])).await,
                    ))
                }
                None => None,
            }
        };
        let email = async {
            match &s.email {
                Some(email) => Some(("email", self.retried(|| self.email(email, alert)).await)),
                None => None,
            }
        };
        let (a, b, c, d) = tokio::join!(slack, webhook, pagerduty, email);
        [a, b, c, d].into_iter().flatten().collect()
    }

    /// `attempt` until it succeeds, at most `attempts` times, each within the time limit,
    /// pausing `backoff` (doubling) between them: the last error if none succeeded.
    async fn retried<F, Fut>(&self, attempt: F) -> Result<(), String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut pause = self.settings.backoff;
        let mut last = String::new();
        for n in 1..=self.settings.attempts {
            match tokio::time::timeout(self.settings.timeout, attempt()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => last = error,
                Err(_) => last = format!("no answer within {:?}", self.settings.timeout),
            }
            if n < self.settings.attempts {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
        }
        Err(format!(
            "{last} (after {} attempts)",
            self.settings.attempts
        ))
    }

    /// Posts `body` as JSON to `url`; a 2xx answer is success.
    async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
        headers: &[(String, String)],
    ) -> Result<(), String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        self.post_bytes(url, bytes, headers).await
    }

    async fn post_bytes(
        &self,
        url: &str,
        body: Vec<u8>,
        headers: &[(String, String)],
    ) -> Result<(), String> {
        let mut request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("ratethrottle/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| format!("POST {}: {e}", redact(url)))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| format!("POST {}: {e}", redact(url)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status} from {}", redact(url)))
        }
    }

    async fn webhook(&self, webhook: &Webhook, alert: &Alert) -> Result<(), String> {
        let body = serde_json::to_vec(&alert.payload()).map_err(|e| e.to_string())?;
        let mut headers = webhook.headers.clone();
        if let Some(secret) = &webhook.secret {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs()
                .to_string();
            headers.push((SIGNATURE_HEADER.into(), sign(secret, &timestamp, &body)));
            headers.push((TIMESTAMP_HEADER.into(), timestamp));
        }
        self.post_bytes(&webhook.url, body, &headers).await
    }

    async fn email(&self, email: &Email, alert: &Alert) -> Result<(), String> {
        let fault = |e: &dyn std::fmt::Display| format!("email: {e}");
        let mut message = Message::builder()
            .from(email.from_address.parse().map_err(|e| fault(&e))?)
            .subject(alert.title())
            .header(ContentType::TEXT_PLAIN);
        for to in &email.to_addresses {
            message = message.to(to.parse().map_err(|e| fault(&e))?);
        }
        let message = message.body(alert.email_text()).map_err(|e| fault(&e))?;
        let mut transport = if email.use_tls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&email.smtp_host)
                .map_err(|e| fault(&e))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.smtp_host)
        }
        .port(email.smtp_port)
        .timeout(Some(self.settings.timeout));
        if let (Some(user), Some(password)) = (&email.username, &email.password) {
            transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
        }
        transport
            .build()
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("email via {}:{}: {e}", email.smtp_host, email.smtp_port))
    }
}

/// A URL for a log line: scheme, host and port only (webhook paths carry secrets).
fn redact(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("?"),
            uri.host().unwrap_or(""),
            uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(an invalid URL)".into(),
    }
}
