#!/usr/bin/env bash
# Re-vendors the playground's third-party assets from the npm registry: GraphiQL's browser
# bundle and the React it runs on. Pinned versions; source-map comments stripped (the maps are
# not shipped, and a browser must not go looking for them); licences copied beside them.
# Run from anywhere: `playground/vendor.sh`, then commit `playground/assets/vendor/`.
set -euo pipefail

GRAPHIQL=3.8.3
REACT=18.3.1

here="$(cd "$(dirname "$0")" && pwd)"
out="$here/assets/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null
for package in graphiql-$GRAPHIQL react-$REACT react-dom-$REACT; do
    mkdir "$package" && tar xzf "$package.tgz" -C "$package"
done

strip_map() { grep -v '^//# sourceMappingURL=\|^/\*# sourceMappingURL=' "$1" > "$2"; }
mkdir -p "$out/licenses"
strip_map "graphiql-$GRAPHIQL/package/graphiql.min.js" "$out/graphiql.min.js"
strip_map "graphiql-$GRAPHIQL/package/graphiql.min.css" "$out/graphiql.min.css"
strip_map "react-$REACT/package/umd/react.production.min.js" "$out/react.production.min.js"
strip_map "react-dom-$REACT/package/umd/react-dom.production.min.js" "$out/react-dom.production.min.js"
cp "graphiql-$GRAPHIQL/package/LICENSE" "$out/licenses/graphiql.LICENSE"
cp "react-$REACT/package/LICENSE" "$out/licenses/react.LICENSE"
cp "react-dom-$REACT/package/LICENSE" "$out/licenses/react-dom.LICENSE"

{
    echo "# Vendored by playground/vendor.sh from the npm registry"
    echo "graphiql $GRAPHIQL (MIT), react $REACT (MIT), react-dom $REACT (MIT)"
    echo
    (cd "$out" && sha256sum ./*.js ./*.css)
} > "$out/VERSIONS"
echo "vendored into $out"
