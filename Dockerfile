# The Kura worker image: Node 20 running the TypeScript sources with tsx (docs/adr/002).
# Build: docker build -t kura .   Used by the kura-worker service of docker-compose.yml.

# Build stage: better-sqlite3 falls back to compiling from source when no prebuilt binary
# matches, so the compiler toolchain lives here and never reaches the runtime image.
FROM node:20-bookworm-slim AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
# glibc's malloc settings of src/stack/malloc.ts (docs/adr/054): two arenas and a fixed mmap
# threshold, so the worker's memory stays flat over days of chunk buffers.
ENV NODE_ENV=production \
    KURA_CONFIG=/etc/kura/kura.yaml \
    KURA_HOME=/var/lib/kura \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
# The image's own unprivileged "node" user (uid 1000) owns only Kura's state directory.
RUN mkdir -p /etc/kura /var/lib/kura && chown node:node /var/lib/kura
USER node
VOLUME ["/var/lib/kura"]
CMD ["node_modules/.bin/tsx", "src/worker.ts"]
