# Smolder in containers: `docker compose up -d` (docker-compose.yml) runs
# the server and an agent for this host from this one image.
#
# Stage 1 builds with the same Makefile and the same Debian packages as a
# bare-host build (`make deps-build`), so the image is what `make` makes.
# The agent's BPF object is compiled here against this machine's kernel
# BTF (vmlinux.h); CO-RE relocates it to whatever kernel runs the agent.
FROM debian:bookworm-slim AS build
# lets tests/compose/compose_test.sh remove this stage's images afterwards
LABEL org.smolder.stage=build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make
WORKDIR /src
COPY Makefile ./
COPY .ci/deps.sh .ci/
RUN make deps-build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make -j"$(nproc)" bin/smolder-server bin/smolder-agent bin/smolder

# Stage 2: only the shared libraries the three programs load, curl for
# the health check, and the UI's static files.
FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	libbpf1 libelf1 libdw1 libdebuginfod1 libuv1 libsqlite3-0 liblz4-1 \
	libxxhash0 libpcre2-8-0 libisal2 libprotobuf-c1 zlib1g libcurl4 libgsl27 libgslcblas0 libyaml-0-2 libjansson4 \
	ca-certificates curl \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/smolder-server /src/bin/smolder-agent /src/bin/smolder /usr/local/bin/
COPY --from=build /src/ui /usr/local/share/smolder/ui
# The server runs as an unprivileged user that owns only its data dir (a
# named volume takes this ownership when first mounted). The agent needs
# root and says so: docker-compose.yml runs it with `user: root`.
RUN useradd --system --home-dir /var/lib/smolder --shell /usr/sbin/nologin smolder \
	&& mkdir -p /var/lib/smolder && chown smolder:smolder /var/lib/smolder
USER smolder
VOLUME /var/lib/smolder
EXPOSE 7070
# Run alone (`docker run -p 127.0.0.1:7070:7070 smolder`), the server is in
# its own network namespace and must listen on all of the container's
# addresses for a published port to reach it. docker-compose.yml instead
# runs it in the host's network, on the host's loopback.
CMD ["smolder-server", "--listen", "0.0.0.0:7070", "--data-dir", "/var/lib/smolder"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
	CMD curl -fsS -o /dev/null http://127.0.0.1:7070/healthz || exit 1
