#!/bin/sh
# Entry point of the gluster node image: glusterd in the foreground, logging to stderr
# (read it with `docker logs`). Brick processes are started by glusterd itself.
set -eu
mkdir -p /bricks /var/lib/glusterd /var/log/glusterfs /run/gluster
exec glusterd --no-daemon --log-level="${GLUSTERD_LOG_LEVEL:-WARNING}" --log-file=-
