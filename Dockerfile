# One image for every service of the stack: what a container becomes (mysql, web,
# scheduler, ...) is decided only by what docker-compose.yaml mounts into it.
#
# Built by scripts/stack-up.sh. The base defaults to the registry's Debian image; on a
# machine without registry access scripts/build-base-image.sh makes an equivalent base
# with debootstrap that already holds every package, and passes --build-arg BASE=...
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# Install the packages unless the base already has them all: an offline-built base has
# no apt lists and no network, so even a no-op `apt-get install` would fail there.
COPY scripts/packages.txt /tmp/packages.txt
RUN set -eu; \
    pkgs=$(grep -vE '^[[:space:]]*(#|$)' /tmp/packages.txt); \
    if ! dpkg -s $pkgs >/dev/null 2>&1; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
        rm -rf /var/lib/mysql/*; \
    fi; \
    rm -f /tmp/packages.txt

# Per-service Apache config comes from the web service's mounted conf dir, so the image
# stays identical for every service. IncludeOptional: other services have no such dir.
RUN echo 'IncludeOptional /usr/local/conf/apache2/*.conf' >>/etc/apache2/apache2.conf

# /usr/local/sbin and /usr/local/bin are bind mounts (target-sbin, service/<svc>/bin),
# so supd must live outside them. supctl is the same binary: argv[0] picks the client.
COPY build/supd /usr/sbin/supd
RUN chmod 0755 /usr/sbin/supd && ln -sf supd /usr/sbin/supctl

WORKDIR /usr/local
STOPSIGNAL SIGTERM
# No CMD: supd then runs /usr/local/sbin/entrypoint.sh (the personality contract).
ENTRYPOINT ["/usr/sbin/supd"]
