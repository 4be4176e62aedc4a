#!/bin/sh
# ensure-chromium.sh: make sure a headless Chromium is present for the browser tests of
# `kubeforge trace --web` (test/e2e/trace_web_test.go, driven by chromedp). As root, on a machine
# without it (CI: Debian), it installs Debian's chromium package with apt; as another user it
# names what is missing and the fix, and exits 3. It prints the browser's path on stdout.
set -eu
TAG=ensure-chromium
. "$(dirname "$0")/lib.sh"

find_chromium() {
	for c in chromium chromium-browser google-chrome-stable google-chrome headless-shell; do
		if p=$(command -v "$c" 2>/dev/null); then
			echo "$p"
			return 0
		fi
	done
	return 1
}

if ! find_chromium >/dev/null; then
	install_missing chromium
fi
if ! p=$(find_chromium); then
	echo "$TAG: chromium is still missing after apt-get install chromium" >&2
	exit 3
fi
# A browser that cannot start headless is as good as none: say so now, not as a test timeout.
if ! out=$("$p" --headless --no-sandbox --disable-gpu --dump-dom about:blank 2>&1); then
	echo "$TAG: $p does not start headless:" >&2
	printf '%s\n' "$out" | tail -n 20 >&2
	exit 3
fi
echo "$p"
