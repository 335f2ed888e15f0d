# The one carelog image: every part (the four services, the projectors, the
# migration job) runs it with different arguments.
#   docker build -t carelog .
# scripts/image builds it and checks it runs as k8s/ runs it (non-root,
# read-only root filesystem); where Docker Hub and gcr.io are out of reach
# it passes stand-in base images built from Debian's archive:
#   --build-arg BUILDER_IMAGE=... --build-arg RUNTIME_IMAGE=...
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p carelog \
    && install -m 0755 target/release/carelog /usr/local/bin/carelog

# Distroless: no shell, no package manager; runs as the non-root user 65532
# and needs no writable root filesystem (/tmp is an emptyDir in k8s/).
FROM ${RUNTIME_IMAGE}
COPY --from=build /usr/local/bin/carelog /usr/local/bin/carelog
USER 65532:65532
EXPOSE 50051 8081 9090
ENTRYPOINT ["/usr/local/bin/carelog"]
