"""Commit: a new image made of a parent image and one layer of changes on top of it.

`docker commit` and every step of a build end here (ImageService.CommitImage and
image.NewChildImage). The child's config is the parent's, moved on by one step:

    rootfs.diff_ids   the parent's, plus the new layer's diff ID -- unless the layer is
                      empty (the sha256 of an empty tar, 1024 zero bytes): a step that only
                      changed the config adds no layer
    history           the parent's, plus one entry: when, the author, `created_by` (the
                      command of the container that made it: a build step's
                      "/bin/sh -c #(nop)  CMD [...]"), the comment, and `empty_layer`
    config            what containers of the new image start with
    container_config  the config of the container that made the layer (the build cache
                      compares this one), `container` its ID
    architecture, variant, os.version, os.features   inherited from the parent

The top-level keys are written sorted and the container configs in Go's field order (the
image ID is the sha256 of these bytes), so a step that is built twice from the same parent
with the same inputs differs only in its times.
"""
from drivers.image import Timestamp, container_config_shape, go_json, sorted_dict
from drivers.linux import go_arch

EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def child_image_config(parent, config, container_config, diff_id, author="", comment="",
                       container_id="", docker_version=""):
    """NewChildImage: the config bytes of the image one layer (`diff_id`) above `parent`
    (an Image, or None for scratch)."""
    empty = diff_id == EMPTY_LAYER_DIFF_ID
    created = Timestamp.now().rfc3339nano()
    entry = {"created": created}
    if author:
        entry["author"] = author
    created_by = " ".join((container_config or {}).get("Cmd") or [])
    if created_by:
        entry["created_by"] = created_by
    if comment:
        entry["comment"] = comment
    if empty:
        entry["empty_layer"] = True
    diff_ids = list(parent.diff_ids) if parent else []
    if not empty:
        diff_ids.append(diff_id)
    rootfs = {"type": "layers"}
    if diff_ids:
        rootfs["diff_ids"] = diff_ids
    architecture, variant = go_arch()
    inherited = parent.config if parent else {"architecture": architecture, "variant": variant}
    fields = {"architecture": inherited.get("architecture") or architecture,
              "config": container_config_shape(config), "container_config":
              container_config_shape(container_config), "created": created,
              "history": (list(parent.history) if parent else []) + [entry], "os": "linux",
              "rootfs": rootfs}
    optional = {"author": author, "container": container_id, "docker_version": docker_version,
                "variant": inherited.get("variant"), "os.version": inherited.get("os.version"),
                "os.features": inherited.get("os.features")}
    fields.update((key, value) for key, value in optional.items() if value)
    return go_json(sorted_dict(fields))


def commit_layer(graph, layer_name, parent_id, config, container_config, author="", comment="",
                 container_id="", pending=None):
    """CommitImage: the changes of writable layer `layer_name` (a container's, or one the
    builder made) as a layer on `parent_id` (None: scratch), and the image made of it;
    returns the new image's ID. The image records `parent_id` as its parent, which makes the
    parent an intermediate image of it (and the build cache's). `pending` (graph.tagging())
    journals the tags the image is committed for."""
    parent = graph.lookup(parent_id) if parent_id else None
    chain = graph.commit_rw_layer(layer_name)
    try:
        raw = child_image_config(parent, config, container_config, graph.layers.get(chain).diff_id,
                                 author, comment, container_id, graph.docker_version)
        return graph.create_image(raw, parent_id, pending)
    finally:
        graph.release_layer(chain)
