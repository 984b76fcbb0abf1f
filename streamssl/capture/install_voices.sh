#!/bin/sh
# Install the real-person speech voices of streamssl/capture/voices.py (run as root).
#
# MBROLA diphone voices (driven by espeak-ng as mb-<id>) and SVOX pico live in Debian's
# contrib/non-free components; flite's voices are in main. The non-free components are
# added by copying the mirror, suites and key of the Debian "main" entry already
# configured (no host name is written here) into a separate sources file. When they
# cannot be had, the script warns on stderr and exits 0: the project then falls back to
# espeak-ng's own voices (voices.available_voices warns too).
#
# Safe to run twice: when every package is installed it only asks dpkg and exits (~10 ms).
# Not root and voices missing: warns and exits 0 (1 if flite, espeak-ng or sox is missing).
# Environment: VOICES_SOURCES (the sources file it writes), APT_SOURCES_DIR,
# APT_SOURCES_LIST (where it looks for the existing entry), OS_RELEASE override the defaults.
# `install_voices.sh --sources-entry` prints URIS|SUITES|COMPONENTS|SIGNED-BY of the entry
# it would copy and does nothing else (for tests).
set -u

SOURCES_DIR=${APT_SOURCES_DIR:-/etc/apt/sources.list.d}
SOURCES_LIST=${APT_SOURCES_LIST:-/etc/apt/sources.list}
OUR_SOURCES=${VOICES_SOURCES:-$SOURCES_DIR/streamssl-voices.sources}
OS_RELEASE=${OS_RELEASE:-/etc/os-release}

MAIN_PKGS="espeak-ng sox flite"
# The mbrola voices of voices.py's inventory: those espeak-ng can drive and that speak
# English text. First those with English rules (mb-us*, mb-en1, the mb-<id>-en variants),
# then the others (real people still, reading by their own language's rules: training).
# Left out (voices.EXCLUDED): bz1 hn1 (no espeak-ng voice), cn1 nl1 (broken in espeak-ng),
# ar1 ar2 hb1 hb2 in1 in2 jp1 jp2 jp3 nz1 tl1 (English text comes out mostly silent).
MBROLA_EN="us1 us2 us3 en1 af1 de1 de2 de3 de4 de5 de6 fr1 fr4 gr2 hu1 nl2 pl1 ro1 sw1 sw2"
MBROLA_OTHER="br1 br2 br3 br4 ca1 ca2 cr1 cz1 cz2 de7 de8 ee1 es1 es2 es3 es4 fr2 fr3 fr5 fr6
  fr7 gr1 ic1 id1 ir1 it1 it2 it3 it4 la1 lt1 lt2 ma1 mx1 mx2 nl3 pt1 tr1 tr2 vz1"
NONFREE_PKGS="mbrola libttspico-utils rhvoice rhvoice-english"
for v in $MBROLA_EN $MBROLA_OTHER; do NONFREE_PKGS="$NONFREE_PKGS mbrola-$v"; done

warn() { echo "install_voices: $*" >&2; }

# Print the packages of "$@" that dpkg does not report as installed (one dpkg-query call).
not_installed() {
    dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null | awk -v want="$*" '
        / installed$/ { ok[$1] = 1 }
        END { n = split(want, w, " "); for (i = 1; i <= n; i++) if (!(w[i] in ok)) printf "%s ", w[i] }'
}

# One line per Debian entry of the deb822 files: URIS|SUITES|COMPONENTS|SIGNED-BY.
deb822_entries() {
    for f in "$SOURCES_DIR"/*.sources; do
        [ -f "$f" ] && [ "$f" != "$OUR_SOURCES" ] || continue
        awk '
            function emit() {
                if (n && f["types"] ~ /(^| )deb( |$)/ && f["enabled"] != "no")
                    print f["uris"] "|" f["suites"] "|" f["components"] "|" f["signed-by"]
                for (k in f) delete f[k]
                n = 0
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { emit(); next }
            /^[[:space:]]/ { next }   # continuation lines (inline keys) are not needed
            { k = $1; sub(/:$/, "", k); v = $0; sub(/^[^:]*:[[:space:]]*/, "", v)
              f[tolower(k)] = v; n = 1 }
            END { emit() }' "$f"
    done
}

# The same for one-line entries: deb [opts] URI SUITE COMPONENT...
oneline_entries() {
    seen=""
    for f in "$SOURCES_LIST" "$SOURCES_DIR"/*.list; do
        case " $seen " in *" $f "*) continue ;; esac
        seen="$seen $f"
        [ -f "$f" ] || continue
        awk '
            $1 != "deb" { next }
            { key = ""; i = 2
              if ($2 ~ /^\[/) {
                  while (i <= NF) {
                      o = $i; gsub(/[][]/, "", o)
                      if (o ~ /^signed-by=/) { key = o; sub(/^signed-by=/, "", key) }
                      if ($i ~ /\]$/) { i++; break }
                      i++
                  }
              }
              uri = $i; suite = $(i + 1); comps = ""
              for (j = i + 2; j <= NF; j++) comps = comps (comps ? " " : "") $j
              print uri "|" suite "|" comps "|" key }' "$f"
    done
}

# The Debian archive entry carrying "main" for this release's codename (not the security
# archive, not a third-party "main" such as nodistro), merged over its suites:
# URIS|SUITES|COMPONENTS|SIGNED-BY, or nothing.
debian_main_entry() {
    os_id=$(sed -n 's/^ID=//p' "$OS_RELEASE" 2>/dev/null | tr -d '"')
    codename=$(sed -n 's/^VERSION_CODENAME=//p' "$OS_RELEASE" 2>/dev/null | tr -d '"')
    [ "$os_id" = debian ] && [ -n "$codename" ] || return 0
    { deb822_entries; oneline_entries; } | awk -F'|' -v codename="$codename" '
        $3 !~ /(^| )main( |$)/ || $1 ~ /security/ || (" " $2 " ") !~ (" " codename "[ -]") { next }
        uris == "" { uris = $1; key = $4 }
        $1 == uris { n = split($2, s, " "); for (i = 1; i <= n; i++) if (!(s[i] in seen)) {
                         seen[s[i]] = 1; suites = suites (suites ? " " : "") s[i] }
                     comps = comps " " $3 }
        END { if (uris != "") print uris "|" suites "|" comps "|" key }'
}

# --sources-entry: print the entry the contrib/non-free sources would copy, and stop.
if [ "${1:-}" = --sources-entry ]; then
    debian_main_entry
    exit 0
fi

# shellcheck disable=SC2086
missing=$(not_installed $MAIN_PKGS $NONFREE_PKGS)
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    warn "missing Debian packages: $missing(run as root: sudo sh $0)"
    # shellcheck disable=SC2086
    [ -n "$(not_installed $MAIN_PKGS)" ] && exit 1
    warn "WARNING: voices.py skips them and fills up with espeak-ng's own voices"
    exit 0
fi

entry=$(debian_main_entry)
if [ -z "$entry" ]; then
    warn "no Debian 'main' apt entry for this release found; cannot add contrib/non-free"
else
    uris=${entry%%|*}; rest=${entry#*|}; suites=${rest%%|*}; rest=${rest#*|}
    comps=${rest%%|*}; key=${rest#*|}
    case " $comps " in
        *" contrib "*" non-free "* | *" non-free "*" contrib "*) ;;  # already enabled there
        *)
            new=$(printf '# written by streamssl install_voices.sh\nTypes: deb\n'
                  printf 'URIs: %s\nSuites: %s\nComponents: contrib non-free\n' "$uris" "$suites"
                  [ -n "$key" ] && printf 'Signed-By: %s\n' "$key")
            if [ ! -f "$OUR_SOURCES" ] || [ "$(cat "$OUR_SOURCES")" != "$new" ]; then
                printf '%s\n' "$new" > "$OUR_SOURCES"
                echo "install_voices: wrote $OUR_SOURCES (contrib non-free of $uris)"
            fi
            ;;
    esac
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || warn "apt-get update failed; trying with the lists there are"

# Only the packages apt has a candidate for: a missing voice must not stop the others.
# shellcheck disable=SC2086
installable=$(apt-cache policy $missing 2>/dev/null | awk '
    /^[^[:space:]].*:$/ { pkg = $0; sub(/:$/, "", pkg) }
    /^[[:space:]]+Candidate:/ && $2 != "(none)" { printf " %s", pkg }')
# shellcheck disable=SC2086
if [ -n "$installable" ] && ! apt-get install -y -qq --no-install-recommends $installable; then
    warn "apt-get install failed for:$installable"
fi

# shellcheck disable=SC2086
still=$(not_installed $MAIN_PKGS $NONFREE_PKGS)
# shellcheck disable=SC2086
if [ -n "$(not_installed $MAIN_PKGS)" ]; then
    warn "required packages missing: $(not_installed $MAIN_PKGS)"
    exit 1
fi
if [ -n "$still" ]; then
    warn "WARNING: voice packages not available: $still"
    warn "WARNING: (contrib/non-free unreachable?) voices.py skips those voices and falls back to espeak-ng's own"
fi
exit 0
