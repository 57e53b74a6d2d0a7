#!/bin/sh
# A job image entrypoint written to the job-image spec, without sbomjob's entrypoint: reads
# /sbom/image-config.json, runs one command per image, exits 0 only if every image succeeded.
# Needs sh, jq, mktemp and your tool. Put your tool into run_tool below.
set -u

CONFIG=${CONFIG:-/sbom/image-config.json}

# run_tool IMAGE PODS NAMESPACES CLUSTERS
#   IMAGE is the config's "image" (usually registry/repository@sha256:...); the others are
#   comma-joined unique values, all three empty for an element with "pods": [] (an image found in
#   a registry by an ImageSource before anything runs it). DOCKER_CONFIG and REGISTRY_AUTH_FILE
#   hold the image's registry credentials, TMPDIR is a private directory removed afterwards.
run_tool() {
  skopeo inspect --no-tags "docker://$1"
}

# Refuse anything but an array of objects with the spec's keys (exit 2: nothing ran).
count=$(jq -e 'if type == "array" and all(.[]; (.image | type) == "string" and (.pods | type) == "array")
               then length else error("not an array of images") end' "$CONFIG") || {
  echo "cannot use $CONFIG" >&2
  exit 2
}

failed=0
i=0
while [ "$i" -lt "$count" ]; do
  el=".[$i]"
  image=$(jq -r "$el.image" "$CONFIG")
  pods=$(jq -r "[$el.pods[].pod] | unique | join(\",\")" "$CONFIG")
  namespaces=$(jq -r "[$el.pods[].namespace] | unique | join(\",\")" "$CONFIG")
  clusters=$(jq -r "[$el.pods[].cluster] | unique | join(\",\")" "$CONFIG")
  work=$(mktemp -d) || exit 1
  # The credentials as a docker config, built by jq straight from the file, so the password never
  # appears on a command line. Keys: the registry host, and the spelling of registry-host.
  jq "$el"' |
    (.image | split("/")) as $p
    | (if (.["registry-host"] // "") != "" then .["registry-host"]
       elif ($p | length) > 1 and ($p[0] | test("[.:]") or . == "localhost") then $p[0]
       else "docker.io" end) as $raw
    | ($raw | sub("^[a-z]+://"; "") | sub("/.*$"; "")) as $host
    | if (.["registry-user"] // "") == "" then {auths: {}}
      else ((.["registry-user"] + ":" + .["registry-password"]) | @base64) as $auth
        | {auths: ([$raw, $host] + (if $host == "docker.io" or $host == "index.docker.io"
                                     then ["docker.io", "https://index.docker.io/v1/"] else [] end)
                   | unique | map({key: ., value: {auth: $auth}}) | from_entries)}
      end' "$CONFIG" >"$work/config.json"
  echo "processing $image (pods ${pods:-none})"
  if DOCKER_CONFIG=$work REGISTRY_AUTH_FILE=$work/config.json TMPDIR=$work \
    run_tool "$image" "$pods" "$namespaces" "$clusters"; then
    echo "ok $image"
    outcome=succeeded
  else
    echo "FAILED $image (exit code $?)"
    failed=$((failed + 1))
    outcome=failed
  fi
  rm -rf "$work"
  # The result line (docs/write-your-own-job-image.md, "Reporting what you found"): only for an
  # image named by its digest.
  case $image in
    *@sha256:*) jq -nc --argjson index "$i" --arg digest "${image##*@}" --arg outcome "$outcome" \
      '{index: $index, digest: $digest, outcome: $outcome, tool: {name: "skopeo"}}' |
      sed 's/^/sbomjob.result\/v1 /' ;;
  esac
  i=$((i + 1))
done

echo "$count images, $failed failed"
[ "$failed" -eq 0 ]
