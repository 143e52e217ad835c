//! Container image references, reduced to what the catalogue matches on: the repository path.
//!
//! Matching is linear in the length of the reference: a pattern is matched from the end of the
//! path backwards (most references differ from a pattern in their last component, and are refused
//! after one comparison), `**` is matched greedily with one point to return to, and references
//! longer than any registry accepts are not matched at all.

/// Longest repository path (registry host included) a registry accepts: the distribution
/// specification's limit on a reference's name, which Docker, containerd and every registry apply.
/// A longer `image` cannot be pulled, so it matches no catalogue entry.
pub const MAX_REPOSITORY_LEN: usize = 255;

/// A parsed image reference: `[host[:port]/]path/component[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// Repository path including any registry host or mirror prefix, without tag or digest.
    pub repository: &'a str,
    /// The tag, if any.
    pub tag: Option<&'a str>,
    /// The digest (`sha256:...`), if any.
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Parses an image reference. Never fails: an odd reference simply matches nothing.
    pub fn parse(image: &'a str) -> ImageRef<'a> {
        let image = image.trim();
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (image, None),
        };
        // A `:` after the last `/` is a tag; before it, it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        ImageRef { repository, tag, digest }
    }

    /// True when the image has neither a tag nor a digest, or the tag is `latest`.
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.is_none_or(|t| t == "latest")
    }

    /// True when the repository path is no longer than a registry accepts ([`MAX_REPOSITORY_LEN`]).
    pub fn fits_registry_limits(&self) -> bool {
        self.repository.len() <= MAX_REPOSITORY_LEN
    }

    /// Matches a pattern (pre-split, lower-case components) against the end of the repository
    /// path, component by component. `*` inside a component is a wildcard; a `**` component
    /// matches any number of components. A path longer than a registry accepts matches nothing.
    pub fn matches_components(&self, pattern: &[String]) -> bool {
        self.fits_registry_limits() && Self::components_match(&self.components(), pattern)
    }

    /// The repository path split at `/`: split once, then matched against every pattern of the
    /// catalogue with [`ImageRef::components_match`].
    pub fn components(&self) -> Vec<&'a str> {
        self.repository.split('/').collect()
    }

    /// [`ImageRef::matches_components`] on components from [`ImageRef::components`].
    ///
    /// The pattern is anchored at the end only: any registry host or mirror prefix may precede it.
    /// Both are read from their last component backwards; a `**` is remembered as the one place to
    /// resume from when a later component does not match, so each component of the path is
    /// compared at most once per component of the pattern: linear in the path's length.
    pub fn components_match(components: &[&str], pattern: &[String]) -> bool {
        let (n, m) = (components.len(), pattern.len());
        let component = |i: usize| components[n - 1 - i];
        let pattern_at = |j: usize| pattern[m - 1 - j].as_str();
        // (i, j): components and pattern components matched so far, counted from the end.
        let (mut i, mut j) = (0, 0);
        // After a `**`: the pattern position that follows it, and the components it has absorbed.
        let mut resume: Option<(usize, usize)> = None;
        loop {
            crate::work::step(1);
            if j == m {
                // Every pattern component matched; what is left of the path is its free prefix.
                return true;
            }
            if pattern_at(j) == "**" {
                j += 1;
                resume = Some((j, i));
            } else if i < n && component_matches(component(i), pattern_at(j)) {
                i += 1;
                j += 1;
            } else {
                match resume {
                    // Let the `**` absorb one more component and try the rest of the pattern again.
                    Some((after, absorbed)) if absorbed < n => {
                        resume = Some((after, absorbed + 1));
                        (i, j) = (absorbed + 1, after);
                    }
                    _ => return false,
                }
            }
        }
    }
}

/// Glob match of one path component (`*` matches any run of characters), ASCII case-insensitive.
/// Greedy with one point to return to: at most |component| × |pattern| comparisons, and the
/// pattern is a short catalogue entry.
fn component_matches(component: &str, pattern: &str) -> bool {
    let c = component.as_bytes();
    let p = pattern.as_bytes();
    let (mut ci, mut pi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ci < c.len() {
        crate::work::step(1);
        if pi < p.len() && p[pi] != b'*' && p[pi].eq_ignore_ascii_case(&c[ci]) {
            ci += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ci;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ci = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Vec<String> {
        p.split('/').map(str::to_owned).collect()
    }

    #[test]
    fn parses_host_port_tag_and_digest() {
        let cases = [
            ("nginx", "nginx", None, None),
            ("nginx:1.27", "nginx", Some("1.27"), None),
            ("registry:5000/team/app", "registry:5000/team/app", None, None),
            ("registry:5000/team/app:v1", "registry:5000/team/app", Some("v1"), None),
            ("gcr.io/x/y@sha256:abc", "gcr.io/x/y", None, Some("sha256:abc")),
            ("gcr.io/x/y:2.8.0@sha256:abc", "gcr.io/x/y", Some("2.8.0"), Some("sha256:abc")),
        ];
        for (image, repo, tag, digest) in cases {
            let r = ImageRef::parse(image);
            assert_eq!((r.repository, r.tag, r.digest), (repo, tag, digest), "{image}");
        }
    }

    #[test]
    fn latest_means_no_tag_no_digest_or_latest() {
        assert!(ImageRef::parse("ubuntu").is_latest());
        assert!(ImageRef::parse("ubuntu:latest").is_latest());
        assert!(ImageRef::parse("localhost:5000/ubuntu").is_latest());
        assert!(!ImageRef::parse("ubuntu:24.04").is_latest());
        assert!(!ImageRef::parse("ubuntu@sha256:0123").is_latest());
    }

    #[test]
    fn patterns_match_whatever_the_host_mirror_tag_or_digest() {
        let p = pat("cloud-sql-connectors/**/cloud-sql-proxy");
        for image in [
            "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0",
            "asia.gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
            "us-central1-docker.pkg.dev/cloud-sql-connectors/gcr.io/cloud-sql-proxy:2.11.0",
            "harbor.corp.example/gcr-mirror/cloud-sql-connectors/cloud-sql-proxy@sha256:deadbeef",
            "GCR.IO/Cloud-SQL-Connectors/cloud-sql-proxy",
        ] {
            assert!(ImageRef::parse(image).matches_components(&p), "{image}");
        }
        for image in
            ["gcr.io/cloud-sql-connectors/other", "gcr.io/cloudsql-docker/gce-proxy:1.33", "cloud-sql-proxy-exporter"]
        {
            assert!(!ImageRef::parse(image).matches_components(&p), "{image}");
        }
    }

    #[test]
    fn component_wildcards_and_suffix_anchoring() {
        let p = pat("opentelemetry-collector*");
        assert!(ImageRef::parse("otel/opentelemetry-collector-contrib:0.110.0").matches_components(&p));
        assert!(
            ImageRef::parse("ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector-k8s:0.1")
                .matches_components(&p)
        );
        assert!(!ImageRef::parse("acme/opentelemetry-collector-config-loader/app").matches_components(&p));
        // A pattern must match whole components: "proxy" is not "myproxy".
        assert!(!ImageRef::parse("acme/myproxy").matches_components(&pat("proxy")));
        assert!(ImageRef::parse("cr.l5d.io/linkerd/proxy:stable-2.14.10").matches_components(&pat("linkerd/proxy")));
        assert!(!ImageRef::parse("acme/proxy").matches_components(&pat("linkerd/proxy")));
    }

    #[test]
    fn double_stars_match_any_number_of_components_anywhere() {
        let cases = [
            ("a/**/b", "a/b", true),
            ("a/**/b", "x/a/c/d/b", true),
            ("a/**/b", "a/c/d", false),
            ("a/**/b", "b", false),
            ("a/**/b/**/c", "r/a/x/b/y/z/c", true),
            ("a/**/b/**/c", "r/a/x/c/y/b", false),
            ("a/**", "gcr.io/a/x/y", true),
            ("a/**", "gcr.io/b/x/y", false),
            ("**/a", "a", true),
            ("a*/**/b*", "x/ab/q/bc", true),
        ];
        for (pattern, image, expected) in cases {
            assert_eq!(ImageRef::parse(image).matches_components(&pat(pattern)), expected, "{pattern} vs {image}");
        }
    }

    #[test]
    fn references_longer_than_a_registry_allows_match_nothing() {
        let p = pat("cloud-sql-connectors/**/cloud-sql-proxy");
        let at_limit = format!("{}/cloud-sql-connectors/cloud-sql-proxy", "r".repeat(MAX_REPOSITORY_LEN - 37));
        assert_eq!(at_limit.len(), MAX_REPOSITORY_LEN);
        assert!(ImageRef::parse(&at_limit).matches_components(&p));
        assert!(!ImageRef::parse(&format!("r{at_limit}:2.8.0")).matches_components(&p));
    }
}
