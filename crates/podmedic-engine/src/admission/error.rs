//! Why a request body is not an AdmissionReview podmedic can answer.

/// Why a request body is not an AdmissionReview podmedic can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or a field has the wrong type.
    #[error("the body is not a valid AdmissionReview: {0}")]
    Decode(String),
    /// The apiVersion or kind is not `admission.k8s.io/v1` `AdmissionReview`.
    #[error("expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {api_version:?} {kind:?}")]
    WrongType {
        /// What the body said.
        api_version: String,
        /// What the body said.
        kind: String,
    },
    /// There is no `request`.
    #[error("the AdmissionReview has no `request`")]
    MissingRequest,
    /// The response could not be encoded (should not happen).
    #[error("cannot encode the response: {0}")]
    Encode(String),
}

impl ReviewError {
    /// Stable label value for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReviewError::Decode(_) => "decode",
            ReviewError::WrongType { .. } => "wrong_type",
            ReviewError::MissingRequest => "missing_request",
            ReviewError::Encode(_) => "encode",
        }
    }
}
