//! `podmedic certs`: its flags, converted into [`CertsConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::units::parse_validity;
use crate::commands::certs::CertsConfig;

/// `podmedic certs`: makes a CA and serving certificate for the in-cluster Service.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, env = "PODMEDIC_SERVICE", default_value = "podmedic")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, env = "PODMEDIC_NAMESPACE", default_value = "podmedic-system")]
    pub namespace: String,
    /// Directory to write the files into (created if missing). If it already holds `ca.crt` and
    /// `ca.key`, that CA signs the new serving certificate and the caBundle stays the same.
    #[arg(long, env = "PODMEDIC_CERTS_OUT", default_value = "certs")]
    pub out: PathBuf,
    /// How long the serving certificate stays valid: a number of days (`365d`) or hours (`12h`).
    #[arg(long, env = "PODMEDIC_CERTS_VALIDITY", default_value = "365d", value_parser = parse_validity)]
    pub validity: Duration,
    /// How long a new CA stays valid; it must outlive every serving certificate it signs.
    #[arg(long, env = "PODMEDIC_CERTS_CA_VALIDITY", default_value = "3650d", value_parser = parse_validity)]
    pub ca_validity: Duration,
    /// Make a new CA even if `--out` holds one. The caBundle then trusts the old and the new CA,
    /// so that Pods still serving the old certificate keep working until they load the new one.
    #[arg(long, env = "PODMEDIC_CERTS_NEW_CA")]
    pub new_ca: bool,
}

impl From<CertsArgs> for CertsConfig {
    fn from(args: CertsArgs) -> Self {
        CertsConfig {
            service: args.service,
            namespace: args.namespace,
            out: args.out,
            validity: args.validity,
            ca_validity: args.ca_validity,
            new_ca: args.new_ca,
        }
    }
}
