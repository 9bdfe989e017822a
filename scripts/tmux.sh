#!/usr/bin/env bash
# Print the path of tmux (the live-view test runs `edgeprof run` in an 80x24 pane),
# installing Debian's `tmux` package when none is found. The test starts its own private
# tmux server and kills it afterwards.
#   scripts/tmux.sh                # prints e.g. /usr/bin/tmux ($EDGEPROF_TMUX first)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
find_or_install tmux.sh tmux EDGEPROF_TMUX tmux
