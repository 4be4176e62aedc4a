# lib.sh: what the ensure-*.sh scripts share. Source it after setting TAG (the script's name in
# messages).

# install_missing PKG...: installs the Debian packages given (none: nothing to do) with apt as
# root; as another user it names them and exits 3.
install_missing() {
	[ $# -gt 0 ] || return 0
	if [ "$(id -u)" != 0 ]; then
		echo "$TAG: missing $*; install them (as root: apt-get install -y $*)" >&2
		exit 3
	fi
	echo "$TAG: installing $*" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# need_root HINT: exits 3 with HINT unless running as root (who may start the daemon).
need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$TAG: $1" >&2
		exit 3
	fi
}

# wait_until WHAT LOG CMD...: polls CMD every 0.5 s for up to 30 s; on failure says that WHAT did
# not answer, shows the tail of LOG (when not empty) and exits 3.
wait_until() {
	what=$1 log=$2
	shift 2
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 60 ]; then
			echo "$TAG: $what did not answer within 30s" >&2
			[ -z "$log" ] || tail -n 30 "$log" >&2
			exit 3
		fi
		sleep 0.5
	done
}
