# The operator image: a static-enough Rust binary on distroless, non-root.
#   docker build -t ghcr.io/pgwarehouse/operator:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY operator ./operator
COPY e2e ./e2e
COPY crds ./crds
COPY stack-templates ./stack-templates
RUN cargo build --release --locked -p pgwarehouse --bin pgwarehouse

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/pgwarehouse /usr/local/bin/pgwarehouse
# distroless's nonroot user; the chart's securityContext runs as the same id.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pgwarehouse"]
CMD ["run"]
