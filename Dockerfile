# kedge's container image: the single binary that `npm run build` compiles (bun build --compile),
# on a minimal base. CI builds dist/kedge first; nothing is compiled here, so no multi-stage build.
#
#   npm run build && docker build -t ghcr.io/kedge-proxy/kedge:<version> .
#
# distroless/base, not distroless/static: a bun-compiled binary is dynamically linked against glibc
# (libc, libm, libpthread, libdl; see `ldd dist/kedge`), which static lacks. base-debian12 ships
# glibc 2.36 (the binary asks for GLIBC_2.17 at most) and CA certificates, and no shell or package
# manager. Build dist/kedge for the image's CPU architecture.
FROM gcr.io/distroless/base-debian12:nonroot

COPY dist/kedge /kedge

# The image's `nonroot` user, numerically, so Kubernetes' runAsNonRoot can verify it
# (deploy/ runs the pod as 65532:65532 too).
USER 65532:65532

# 8443: HTTPS (server.http_tls_port); 8081: admin, /_healthz and /metrics (server.admin_port).
EXPOSE 8443 8081

ENTRYPOINT ["/kedge"]
