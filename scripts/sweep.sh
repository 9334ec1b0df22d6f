#!/usr/bin/env bash
# Removes DB-Forge's labelled Docker objects.
#   sweep.sh RUN   only what the test run RUN created (label dbforge.test-run=RUN)
#   sweep.sh all   every container and volume DB-Forge manages (label dbforge.managed=true)
set -u
case "${1:-}" in
  "") echo "usage: $0 RUN|all" >&2; exit 2 ;;
  all) filter="label=dbforge.managed=true" ;;
  *) filter="label=dbforge.test-run=$1" ;;
esac
containers=$(docker ps -aq --filter "$filter")
[ -n "$containers" ] && docker rm -f $containers >/dev/null
volumes=$(docker volume ls -q --filter "$filter")
[ -n "$volumes" ] && docker volume rm -f $volumes >/dev/null
networks=$(docker network ls -q --filter "$filter")
[ -n "$networks" ] && docker network rm $networks >/dev/null
exit 0
