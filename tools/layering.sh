#!/bin/sh
# layering.sh: checks that each folder's archive uses only the folders it may.
#
#   sh tools/layering.sh [--print] BUILD base: proto:base adapters:base ...
#
# Each argument after BUILD is "folder:allowed,allowed". For every folder it
# checks two things and fails naming each breach:
#   - symbols: an undefined symbol of BUILD/lib<folder>.a that another
#     project archive defines must come from the folder itself or an allowed one;
#   - headers: a source of the folder includes a header of an allowed folder
#     only ("../<folder>/...").
# --print also prints the allowed graph.
set -eu
print=0
[ "$1" = "--print" ] && { print=1; shift; }
build=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

src_dir() { [ "$1" = tools ] && echo tools/lib || echo "$1"; }

folders=""
for spec in "$@"; do
	f=${spec%%:*}
	folders="$folders $f"
	nm --defined-only -g "$build/lib$f.a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/def.$f"
done

[ $print = 1 ] && echo "allowed dependencies (folder: what it may use):"
bad=0
for spec in "$@"; do
	f=${spec%%:*}
	allowed=$(echo "${spec#*:}" | tr ',' ' ')
	[ $print = 1 ] && printf '  %-9s %s\n' "$f:" "${allowed:-(nothing: the base of everything)}"
	# Symbols this archive needs from outside itself.
	nm -u "$build/lib$f.a" 2>/dev/null | awk '{ print $NF }' | sort -u | comm -23 - "$tmp/def.$f" >"$tmp/need"
	for g in $folders; do
		[ "$g" = "$f" ] && continue
		case " $allowed " in *" $g "*) continue ;; esac
		comm -12 "$tmp/need" "$tmp/def.$g" >"$tmp/hit"
		while read -r sym; do
			users=$(nm -A -u "$build/lib$f.a" | awk -v s="$sym" '$NF == s { split($1, p, ":"); print p[2] }' | sort -u | tr '\n' ' ')
			echo "layering: $f/ uses $sym of $g/ (in ${users% }); $f/ may use only: ${allowed:-nothing}" >&2
			bad=1
		done <"$tmp/hit"
	done
	# Headers of folders it may not use.
	for file in $(src_dir "$f")/*.c $(src_dir "$f")/*.h; do
		[ -e "$file" ] || continue
		grep -o '#include "\.\./[^"]*"' "$file" | sed 's|#include "\.\./\([^/"]*\)/.*|\1|' | sort -u |
			while read -r g; do
				[ "$g" = "$f" ] && continue
				case " $allowed " in *" $g "*) continue ;; esac
				echo "layering: $file includes a header of $g/; $f/ may use only: ${allowed:-nothing}" >&2
				echo x
			done >>"$tmp/hdr"
	done
done
[ -s "$tmp/hdr" 2>/dev/null ] && bad=1
[ $bad = 0 ] && { [ $print = 1 ] && echo "layering: every folder uses only what it may"; exit 0; }
exit 1
