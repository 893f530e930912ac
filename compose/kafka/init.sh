#!/usr/bin/env bash
# kafka-init (docker-compose.yml, one shot): the SCRAM users and the ACLs of compose/kafka/acls.txt,
# as pf-admin over SASL_SSL. Safe to run again: users are upserted, kafka-acls --add is idempotent.
# (The three paths can be pointed elsewhere for the unit test that runs this script with stub tools.)
set -euo pipefail
bin=${PF_KAFKA_BIN:-/opt/kafka/bin}
conf=${PF_KAFKA_CONF:-/etc/probablyfresh/kafka}
secrets=${PF_SECRETS:-/run/secrets}
bootstrap=kafka:19092
cfg=$(mktemp)
trap 'rm -f "$cfg"' EXIT
cp "$conf/client.properties" "$cfg"
printf 'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="pf-admin" password="%s";\n' \
  "$(cat "$secrets/kafka-pf-admin.password")" >> "$cfg"
for user in pf-connect pf-processor pf-clickhouse; do
  "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$cfg" --alter --entity-type users \
    --entity-name "$user" --add-config "SCRAM-SHA-512=[password=$(cat "$secrets/kafka-$user.password")]" > /dev/null
  echo "user $user: SCRAM-SHA-512 set"
done
grep -v '^#' "$conf/acls.txt" | while read -r user ops kind name pattern; do
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
