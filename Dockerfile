# video-gateway: production image.
#   docker build -t video-gateway .
#   docker run --rm -p 8080:8080 video-gateway          # simulator mode (prints a demo key)
#   docker run --rm -p 8080:8080 --env-file .env \
#     -v "$PWD/tenants.json:/app/config/tenants.json:ro" \
#     -e TENANTS_FILE=/app/config/tenants.json video-gateway   # real Evolink key
# Plain Dockerfile syntax (no BuildKit-only features), so the legacy builder
# that docker-compose v1 drives builds it too.

ARG NODE_IMAGE=node:24-slim

# 1. Build: all dependencies (TypeScript is a dev dependency), compile src/ to dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only (no dependency needs an install script).
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts \
  && npm cache clean --force

# 3. Runtime: node, production node_modules, dist/ and package.json
#    (dist/app.js imports ../package.json for the version it reports).
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
# Files stay owned by root: the process (user `node`) can read but not change its code.
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Database mode runs these at start (dist/features/database/migrate.js finds them at ../../../migrations).
COPY migrations ./migrations
COPY package.json ./
USER node
EXPOSE 8080
# slim has no curl/wget: node's own fetch. Exit 0 only on a 2xx from /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# On SIGTERM close-with-grace stops accepting and lets in-flight requests finish
# for up to SHUTDOWN_GRACE_MS (default 10 s). `docker stop` sends SIGKILL after
# 10 s by default, so give it more (`docker stop -t 15`, compose
# stop_grace_period) or lower SHUTDOWN_GRACE_MS.
STOPSIGNAL SIGTERM
CMD ["node", "dist/server.js"]
