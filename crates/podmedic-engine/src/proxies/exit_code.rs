//! Exit code 0 when the kubelet stops a moved proxy: the proxies' own flag, added only where the
//! image is known to have it.

use super::{Found, ProxyKind, Setting, env_name, lookup, unreadable_settings};
use crate::kubernetes::ImageRef;
use crate::object::Container;

/// The flag that makes a proxy exit 0 instead of 143 on SIGTERM, and the first release with it
/// (CHANGELOG.md of each proxy: Cloud SQL 2.6.0, 2023-07-14; AlloyDB 1.11.0, 2024-08-15). The
/// spellings differ, and an unknown flag stops the proxy from starting.
fn exit_zero_flag(kind: ProxyKind) -> Option<(&'static str, (u32, u32, u32))> {
    match kind {
        ProxyKind::CloudSqlV2 => Some(("exit-zero-on-sigterm", (2, 6, 0))),
        ProxyKind::AlloyDb => Some(("exit-zero-sigterm", (1, 11, 0))),
        ProxyKind::CloudSqlV1 => None,
    }
}

/// The setting that makes a moved proxy exit 0 when the kubelet stops it after the main container
/// (otherwise it ends with 143 and shows as `Error`): `None` when it does not apply (no such flag,
/// the user set it, a shell script or settings podmedic cannot read), `Some(Err(note))` when the
/// image is not known to be new enough: a digest only, `latest`, a major-only floating tag (`:1`
/// of AlloyDB predates the flag) or anything that is not a release number.
pub(crate) fn exit_zero_on_sigterm(c: &Container<'_>, kind: ProxyKind) -> Option<Result<Setting, String>> {
    let (flag, since) = exit_zero_flag(kind)?;
    if !matches!(lookup(c, kind, flag, false), Found::Absent)
        || c.shell_script().is_some()
        || unreadable_settings(c, kind).is_some()
    {
        return None;
    }
    let tag = c.image.as_deref().map(ImageRef::parse).and_then(|image| image.tag);
    let (major, minor, patch) = since;
    if tag.and_then(release_of).is_none_or(|version| version < since) {
        return Some(Err(format!(
            "exits with code 143 when stopped: podmedic adds --{flag} only for an image tag known to be \
             {major}.{minor}.{patch} or newer"
        )));
    }
    let env_form = c.env().iter().any(|e| e.name.starts_with(kind.env_prefix()));
    Some(Ok(if env_form {
        Setting::Env(env_name(kind, flag), "true".into())
    } else {
        Setting::Arg(format!("--{flag}"))
    }))
}

/// The release an image tag names: `2.14.1`, or a floating `2.14` (any 2.14.z is at least 2.14.0),
/// optionally with a base-image variant (`-alpine`, `-bullseye`, `-bookworm`, `-buster`). Nothing
/// else: not `latest`, not a major-only `2`, not a pre-release like `2.0.0-preview.3`.
pub(crate) fn release_of(tag: &str) -> Option<(u32, u32, u32)> {
    let version =
        ["-alpine", "-bullseye", "-bookworm", "-buster"].iter().find_map(|v| tag.strip_suffix(v)).unwrap_or(tag);
    let numbers: Vec<u32> =
        version.split('.').map(|n| n.parse().ok().filter(|_| !n.starts_with('+'))).collect::<Option<_>>()?;
    match numbers[..] {
        [major, minor] => Some((major, minor, 0)),
        [major, minor, patch] => Some((major, minor, patch)),
        _ => None,
    }
}
