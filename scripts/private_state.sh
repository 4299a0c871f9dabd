# Sourced by scripts/slurm_cluster.sh and scripts/postgres_server.sh: where a test server keeps
# its state. Run as root, a fixed folder under /tmp could be made beforehand by anyone (with a
# munge key or a data folder of their choosing), so the default is a new private folder
# (mktemp -d: 0700, ours), remembered in a file only we can read, so `down` and `status` find it.
#   state_dir NAME ENV_VALUE [OWNER] -> prints the folder: ENV_VALUE if given (made 0700 if
#                               absent, refused unless OWNER, default us, owns it), else the
#                               remembered one (nothing when there is none)
#   new_state_dir NAME [OWNER]  -> makes and remembers a new private folder owned by OWNER
#   forget_state_dir NAME       -> forgets the remembered folder (the caller deletes it)

STATE_POINTERS="${XDG_RUNTIME_DIR:-${HOME:-/root}/.cache}/ploutos"

state_pointer() { echo "$STATE_POINTERS/$1.dir"; }

# A folder we may trust: a real directory (not a link), owned by $2 (default us), that nobody
# else can write to.
state_dir_ok() {
    local owner
    owner="$(id -u "${2:-$(id -un)}")"
    [[ -d $1 && ! -L $1 && "$(stat -c %u "$1")" == "$owner" ]] || return 1
    (((8#$(stat -c %a "$1") & 8#022) == 0))
}

state_dir() {
    local name=$1 given=${2:-} owner=${3:-} remembered
    if [[ -n $given ]]; then
        given="$(realpath -m "$given")"
        if [[ ! -e $given ]]; then
            mkdir -p -m 700 "$given"
            [[ -z $owner ]] || chown "$owner:" "$given"
        fi
        if ! state_dir_ok "$given" "$owner"; then
            echo "$name: $given is not a private folder of ${owner:-$(id -un)} (a link, someone" \
                "else's, or writable by others): refused; unset the variable for a new private one" >&2
            return 1
        fi
        echo "$given"
        return 0
    fi
    remembered="$(cat "$(state_pointer "$name")" 2>/dev/null || true)"
    if [[ -n $remembered ]] && state_dir_ok "$remembered" "$owner"; then
        echo "$remembered"
    fi
}

new_state_dir() {
    local name=$1 owner=${2:-} dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXXXX")"
    [[ -z $owner ]] || chown "$owner:" "$dir"
    mkdir -p -m 700 "$STATE_POINTERS"
    echo "$dir" >"$(state_pointer "$name")"
    chmod 600 "$(state_pointer "$name")"
    echo "$dir"
}

forget_state_dir() { rm -f "$(state_pointer "$1")"; }
