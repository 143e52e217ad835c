//! Why a policy could not be loaded.

/// Why a policy could not be loaded. Every variant names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a field has the wrong type or name.
    #[error("policy {origin}: field `{field}`: {message}")]
    Parse {
        /// Where the policy came from.
        origin: String,
        /// The path of the offending field, for example `catalogue.sidecars[2].images`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The YAML parsed but a value is not acceptable.
    #[error("policy {origin}: field `{field}`: {message}")]
    Invalid {
        /// Where the policy came from.
        origin: String,
        /// The path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
}
