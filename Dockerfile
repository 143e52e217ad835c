# syntax=docker/dockerfile:1
# podmedic's image: a static musl binary on distroless "static", running as a non-root user.
#
# Build it yourself (the binary is compiled here, with the `dist` profile), for one or both
# architectures, and push it to your registry:
#   docker buildx build --platform linux/amd64,linux/arm64 -t registry.example/podmedic:0.1.0 --push .
# The release workflow (.github/workflows/release.yml) compiles the binaries once, outside,
# profile-guided and laid out by BOLT (tools/pgo/build.sh: faster than this stage's plain build,
# BENCHMARKS.md), puts them at prebuilt/amd64/podmedic and prebuilt/arm64/podmedic, and passes
# BINARY=prebuilt, so that the image holds the very binary the release page offers (and nothing
# runs under emulation):
#   docker buildx build --build-arg BINARY=prebuilt --platform linux/amd64,linux/arm64 ...
# Not built on the machine it was written on (no container engine there). Keep the UID in step
# with deploy/base/deployment.yaml (runAsUser: 65532).

# Where the binary comes from: `build` (compile it below) or `prebuilt` (copy it from prebuilt/).
# BuildKit builds only the stages the image needs, so the other one costs nothing.
ARG BINARY=build

# The official Alpine image's Rust targets musl, so the binary is static on every architecture
# buildx builds for (amd64, arm64) without naming a --target.
# The newest stable Rust, as in development (the crate needs 1.88 or newer).
FROM docker.io/library/rust:1-alpine AS build
# ring compiles C and assembly. (jemalloc, podmedic's allocator on glibc, is not used on musl.)
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# crt-static is musl's default; stated so that a change of base image cannot make it dynamic.
ENV RUSTFLAGS="-C target-feature=+crt-static"
# The `dist` profile (Cargo.toml): stripped, fat LTO, one codegen unit, unwinding kept.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --bin podmedic \
    && cp target/dist/podmedic /podmedic

# A static binary built elsewhere, one per architecture: prebuilt/amd64/podmedic, prebuilt/arm64/podmedic.
FROM scratch AS prebuilt
ARG TARGETARCH
COPY prebuilt/${TARGETARCH}/podmedic /podmedic

FROM ${BINARY} AS binary

# No shell, no package manager, CA certificates and /etc/passwd only; "nonroot" is UID 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=binary /podmedic /usr/local/bin/podmedic
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/podmedic"]
CMD ["serve"]
