#!/bin/sh
# Builds the built-in page's vendored assets: installs the pinned chart library (uPlot) from the npm registry
# and copies its minified build and licence into web/assets/vendor/. The output is committed, so
# `cargo build` needs no Node; run this only to change the library's version (then commit web/assets/vendor),
# on a machine that reaches the npm registry. Nothing else needs npm: the tests (the browser test included,
# web/test/page.py) and CI run without it.
#   cd web && npm run build        (or: sh web/build.sh)
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
mkdir -p assets/vendor
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css assets/vendor/
cp node_modules/uplot/LICENSE assets/vendor/uPlot.LICENSE
echo "web/assets/vendor: uPlot $(node -p 'require("./node_modules/uplot/package.json").version')"
ls -l assets/vendor
