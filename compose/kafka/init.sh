#!/usr/bin/env bash
# kafka-init (docker-compose.yml, one shot): the SCRAM users and the ACLs of compose/kafka/acls.txt,
# as pf-admin over SASL_SSL. Safe to run again: users are upserted, kafka-acls --add is idempotent.
set -euo pipefail
bin=/opt/kafka/bin
bootstrap=kafka:19092
cfg=$(mktemp)
trap 'rm -f "$cfg"' EXIT
cp /etc/probablyfresh/kafka/client.properties "$cfg"
printf 'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="pf-admin" password="%s";\n' \
  "$(cat /run/secrets/kafka-pf-admin.password)" >> "$cfg"
for user in pf-connect pf-processor pf-clickhouse; do
  "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$cfg" --alter --entity-type users \
    --entity-name "$user" --add-config "SCRAM-SHA-512=[password=$(cat "/run/secrets/kafka-$user.password")]" > /dev/null
  echo "user $user: SCRAM-SHA-512 set"
done
grep -v '^#' /etc/probablyfresh/kafka/acls.txt | while read -r user ops kind name pattern; do
  [ -n "$user" ] || continue
  case "$kind" in
    topic) resource=(--topic "$name") ;;
    group) resource=(--group "$name") ;;
    transactional-id) resource=(--transactional-id "$name") ;;
    cluster) resource=(--cluster) ;;
  esac
  operations=()
  for op in ${ops//,/ }; do operations+=(--operation "$op"); done
  "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$cfg" --add --allow-principal "User:$user" \
    "${operations[@]}" "${resource[@]}" --resource-pattern-type "$pattern" > /dev/null
  echo "acl $user $ops $kind $name $pattern"
done
