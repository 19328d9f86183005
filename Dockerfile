# syntax=docker/dockerfile:1
# etcd-discovery-gateway: multi-stage build, production dependencies only, non-root.
#   docker build -t etcd-discovery-gateway .
#   docker run -p 8080:8080 -e ETCD_ENDPOINTS=http://etcd:2379 etcd-discovery-gateway
# The same image runs the agent: docker run … etcd-discovery-gateway discovery-agent run --gateway … -- CMD

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: every dependency (TypeScript), compile src/ to dist/ ---
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies and the compiled code only ---
FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: it reaps orphaned processes (Node cannot) and passes signals on, so the gateway
# and discovery-agent (and the CMD it wraps) are never PID 1 themselves.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY ui ./ui
COPY bin ./bin
COPY openapi ./openapi
# discovery-agent on the PATH (npm ci does not link a package's own bin entries).
RUN ln -s /app/bin/discovery-agent /usr/local/bin/discovery-agent
# The node image's unprivileged user; the files above stay root-owned and read-only to it.
USER node
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
# Liveness only (the process serves); readiness (/health/ready) is the load balancer's probe.
# No curl in slim images: node's own fetch. Follows PORT, and TLS_CERT_FILE (self-signed allowed).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "if(process.env.TLS_CERT_FILE)process.env.NODE_TLS_REJECT_UNAUTHORIZED='0';fetch((process.env.TLS_CERT_FILE?'https':'http')+'://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM drains (stop accepting, end change streams, finish requests, close the store client).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
# `npm start` = `prestart` (scripts/build-if-stale.mjs: run tsc when dist/ is missing or older
# than src/) then `node dist/main.js`. Here dist/ is built in the build stage and neither src/,
# tsconfig*.json nor TypeScript are in the image, so the build check has nothing to do (and could
# not run): the image calls the same entry point directly. Without npm in between, SIGTERM
# reaches the gateway itself and it drains.
CMD ["node", "dist/main.js"]
