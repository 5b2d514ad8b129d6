#!/bin/sh
# Entry point of the gluster node image: glusterd in the foreground, logging to stderr
# (read it with `docker logs`). Brick processes are started by glusterd itself.
set -eu
mkdir -p /bricks /var/lib/glusterd /var/log/glusterfs /run/gluster
# Nothing of gluster runs yet, so every pid file is stale: after `docker stop`/`start`
# (or kill) the pids start from 1 again, and a stale brick pid file naming a pid that is
# now some other process makes glusterd believe the brick runs and never start it.
find /run/gluster -name '*.pid' -delete
exec glusterd --no-daemon --log-level="${GLUSTERD_LOG_LEVEL:-WARNING}" --log-file=-
