//! A container's probes: the handler and the timing fields the restart-loop checks compare.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::Text;
use super::decode::{items, object};

/// A probe (startup, readiness or liveness).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe<'a> {
    /// An HTTP GET.
    #[serde(default, borrow, deserialize_with = "object")]
    pub http_get: Option<HttpGetAction<'a>>,
    /// A TCP connect.
    #[serde(default, borrow, deserialize_with = "object")]
    pub tcp_socket: Option<TcpSocketAction<'a>>,
    /// A gRPC health check.
    #[serde(default, borrow, deserialize_with = "object")]
    pub grpc: Option<GrpcAction<'a>>,
    /// A command run in the container.
    #[serde(default, borrow, deserialize_with = "object")]
    pub exec: Option<ExecAction<'a>>,
    /// Seconds before the first probe (default 0).
    #[serde(default)]
    pub initial_delay_seconds: Option<i64>,
    /// Seconds between probes (default 10).
    #[serde(default)]
    pub period_seconds: Option<i64>,
    /// Consecutive failures that count as failed (default 3).
    #[serde(default)]
    pub failure_threshold: Option<i64>,
}

impl Probe<'_> {
    /// Seconds from the container's start until a probe that never succeeds has failed, with the
    /// API server's defaults: `initialDelaySeconds + periodSeconds × failureThreshold`.
    pub fn failure_window_seconds(&self) -> i64 {
        let delay = self.initial_delay_seconds.unwrap_or(0).max(0);
        let period = self.period_seconds.filter(|p| *p > 0).unwrap_or(10);
        let threshold = self.failure_threshold.filter(|t| *t > 0).unwrap_or(3);
        delay.saturating_add(period.saturating_mul(threshold))
    }

    /// The port the probe connects to, if it names one (`httpGet` or `tcpSocket`).
    pub fn port(&self) -> Option<&PortRef<'_>> {
        self.http_get.as_ref().and_then(|h| h.port.as_ref()).or_else(|| self.tcp_socket.as_ref()?.port.as_ref())
    }
}

/// `httpGet`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction<'a> {
    /// The path (empty means `/`).
    #[serde(default, borrow)]
    pub path: Option<Text<'a>>,
    /// The port, a number or a container port's name.
    #[serde(default, borrow)]
    pub port: Option<PortRef<'a>>,
    /// The host (default: the Pod's IP).
    #[serde(default, borrow)]
    pub host: Option<Text<'a>>,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default, borrow)]
    pub scheme: Option<Text<'a>>,
}

/// `tcpSocket`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpSocketAction<'a> {
    /// The port, a number or a container port's name.
    #[serde(default, borrow)]
    pub port: Option<PortRef<'a>>,
    /// The host (default: the Pod's IP).
    #[serde(default, borrow)]
    pub host: Option<Text<'a>>,
}

/// `grpc`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcAction<'a> {
    /// The port (always a number).
    #[serde(default)]
    pub port: Option<i64>,
    /// The gRPC service name.
    #[serde(default, borrow)]
    pub service: Option<Text<'a>>,
}

/// `exec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecAction<'a> {
    /// The command.
    #[serde(default, borrow, deserialize_with = "items")]
    pub command: Option<Vec<Text<'a>>>,
}

/// A port given as a number or as the name of a container port (an `IntOrString`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef<'a> {
    /// A port number.
    Number(i64),
    /// A port name, or a number written as a string.
    Name(Text<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for PortRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortRef<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or name")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(PortRef::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(PortRef::Number).map_err(|_| E::custom("port number out of range"))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(PortRef::Name(Text(v.into())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PortRef::Name(Text(v.to_owned().into())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(PortRef::Name(Text(v.into())))
            }
        }
        d.deserialize_any(V).map(|p| p as PortRef<'a>)
    }
}
