#!/usr/bin/env bash
# System packages the test suite needs beyond the venv: headless Chromium for the chat page's
# end-to-end test. Installed only when missing; never fails the run if apt is unavailable
# (the browser tests then skip with a reason).
set -u
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian chromium for browser tests..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "could not install chromium; browser tests will be skipped"
  else
    echo "chromium not found and cannot be installed here; browser tests will be skipped"
  fi
fi
exit 0
