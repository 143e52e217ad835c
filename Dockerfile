# syntax=docker/dockerfile:1
# podmedic's image: a static musl binary on distroless "static", running as a non-root user.
#   docker build -t ghcr.io/podmedic/podmedic:0.1.0 .
# Not built on the machine it was written on (no container engine there): build it in CI or
# locally. Keep it minimal, and keep the UID in step with deploy/base/deployment.yaml (runAsUser: 65532).

# The official Alpine image's Rust targets musl, so the binary is static on every architecture
# buildx builds for (amd64, arm64) without naming a --target.
# The newest stable Rust, as in development (the crate needs 1.88 or newer).
FROM docker.io/library/rust:1-alpine AS build
# ring compiles C and assembly.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# crt-static is musl's default; stated so that a change of base image cannot make it dynamic.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin podmedic \
    && cp target/release/podmedic /podmedic

# No shell, no package manager, CA certificates and /etc/passwd only; "nonroot" is UID 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /podmedic /usr/local/bin/podmedic
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/podmedic"]
CMD ["serve"]
