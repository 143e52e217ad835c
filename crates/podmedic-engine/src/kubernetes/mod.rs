//! Kubernetes value types, reduced to what podmedic needs: image references (what the catalogue
//! matches on), resource quantities (enough to compare them) and versions (with the native-sidecar
//! rule).

mod image;
pub(crate) mod quantity;
mod version;

pub use image::ImageRef;
pub use quantity::Quantity;
pub use version::{KubeVersion, NATIVE_SIDECARS_SINCE, NativeSidecars, NodeKubelet, decide_native_sidecars};
