"""TensorFlow reference for the official-checkpoint tests: writes genuine TF checkpoints and the outputs TF computes.

Run as a script in its own process (TensorFlow and torchvision must not share a process that imported TensorFlow
first): `python official_tf_reference.py SPECS.json OUT_DIR`. For each spec it builds the official SimCLR network
with `tf.compat.v1` layers (the functions below follow google-research/simclr `resnet.py` and `model_util.py`,
Apache-2.0: same layers, same scopes, same creation order, bottleneck blocks, sk0 and sk1), gives every variable a
random value (BatchNorm statistics far from 0 and 1), adds the training state the released checkpoints carry
(`/Momentum` slots, an `ema_model/` copy, `global_step`), saves it with a TF saver under
`OUT_DIR/<folder>/model.ckpt-<step>` and writes `OUT_DIR/<folder>/reference.npz`: the images and TF's h, z, logits.
Specs of kind "preprocessing" write TF's official evaluation preprocessing (`data_util.py`) of random images;
kind "reader" writes the small multi-dtype checkpoint in `tests/official/tf_checkpoint` and what TF's reader returns;
kind "layout" writes the variable names and shapes of full-size networks without computing anything (the fixture
`tests/official/sk1_layouts.json.gz`); kind "benchmark" saves a checkpoint whose values TensorFlow's initialisers
draw (no reference outputs).
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.compat.v1.layers live in tf-keras since TensorFlow 2.16

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
BATCH_NORM_EPSILON = 1e-5


def batch_norm_relu(inputs, is_training, relu=True, init_zero=False, center=True, scale=True):
    inputs = tf1.layers.batch_normalization(
        inputs=inputs,
        axis=-1,
        momentum=0.9,
        epsilon=BATCH_NORM_EPSILON,
        center=center,
        scale=scale,
        training=is_training,
        gamma_initializer=tf1.zeros_initializer() if init_zero else tf1.ones_initializer(),
    )
    return tf.nn.relu(inputs) if relu else inputs


def fixed_padding(inputs, kernel_size):
    pad_total = kernel_size - 1
    pad_beg = pad_total // 2
    return tf.pad(inputs, [[0, 0], [pad_beg, pad_total - pad_beg], [pad_beg, pad_total - pad_beg], [0, 0]])


def conv2d_fixed_padding(inputs, filters, kernel_size, strides):
    if strides > 1:
        inputs = fixed_padding(inputs, kernel_size)
    return tf1.layers.conv2d(
        inputs=inputs,
        filters=filters,
        kernel_size=kernel_size,
        strides=strides,
        padding="SAME" if strides == 1 else "VALID",
        use_bias=False,
        kernel_initializer=tf1.variance_scaling_initializer(),
    )


def sk_conv2d(inputs, filters, strides, sk_ratio, is_training, min_dim=32):
    """resnet.py sk_conv2d (channels_last)."""
    inputs = conv2d_fixed_padding(inputs=inputs, filters=2 * filters, kernel_size=3, strides=strides)
    inputs = batch_norm_relu(inputs, is_training)
    inputs = tf.stack(tf.split(inputs, num_or_size_splits=2, axis=3))
    mid_dim = max(int(filters * sk_ratio), min_dim)
    global_features = tf.reduce_mean(tf.reduce_sum(inputs, axis=0), [1, 2], keepdims=True)
    global_features = tf1.layers.conv2d(
        inputs=global_features,
        filters=mid_dim,
        kernel_size=1,
        strides=1,
        kernel_initializer=tf1.variance_scaling_initializer(),
        use_bias=False,
    )
    global_features = batch_norm_relu(global_features, is_training)
    mixing = tf1.layers.conv2d(
        inputs=global_features,
        filters=2 * filters,
        kernel_size=1,
        strides=1,
        kernel_initializer=tf1.variance_scaling_initializer(),
        use_bias=False,
    )
    mixing = tf.stack(tf.split(mixing, num_or_size_splits=2, axis=3))
    mixing = tf.nn.softmax(mixing, axis=0)
    return tf.reduce_sum(inputs * mixing, axis=0)


def bottleneck_block(inputs, filters, is_training, strides, use_projection=False, sk_ratio=0.0):
    shortcut = inputs
    if use_projection:  # created first, as in the official code: conv2d_N / batch_normalization_N numbering
        if sk_ratio > 0:  # ResNet-D: average pool, then a 1x1 convolution
            shortcut = fixed_padding(inputs, 2) if strides > 1 else inputs
            shortcut = tf1.layers.average_pooling2d(
                shortcut, pool_size=2, strides=strides, padding="SAME" if strides == 1 else "VALID"
            )
            shortcut = conv2d_fixed_padding(inputs=shortcut, filters=4 * filters, kernel_size=1, strides=1)
        else:
            shortcut = conv2d_fixed_padding(inputs=inputs, filters=4 * filters, kernel_size=1, strides=strides)
        shortcut = batch_norm_relu(shortcut, is_training, relu=False)
    inputs = conv2d_fixed_padding(inputs=inputs, filters=filters, kernel_size=1, strides=1)
    inputs = batch_norm_relu(inputs, is_training)
    if sk_ratio > 0:
        inputs = sk_conv2d(inputs, filters, strides, sk_ratio, is_training)
    else:
        inputs = conv2d_fixed_padding(inputs=inputs, filters=filters, kernel_size=3, strides=strides)
        inputs = batch_norm_relu(inputs, is_training)
    inputs = conv2d_fixed_padding(inputs=inputs, filters=4 * filters, kernel_size=1, strides=1)
    inputs = batch_norm_relu(inputs, is_training, relu=False, init_zero=True)
    return tf.nn.relu(inputs + shortcut)


def resnet(inputs, layers, width_multiplier, is_training, sk_ratio=0.0):
    if sk_ratio > 0:  # ResNet-D stem
        for filters, strides in ((64 * width_multiplier // 2, 2), (64 * width_multiplier // 2, 1)):
            inputs = conv2d_fixed_padding(inputs=inputs, filters=int(filters), kernel_size=3, strides=strides)
            inputs = batch_norm_relu(inputs, is_training)
        inputs = conv2d_fixed_padding(inputs=inputs, filters=int(64 * width_multiplier), kernel_size=3, strides=1)
    else:
        inputs = conv2d_fixed_padding(inputs=inputs, filters=int(64 * width_multiplier), kernel_size=7, strides=2)
    inputs = batch_norm_relu(inputs, is_training)
    inputs = tf1.layers.max_pooling2d(inputs=inputs, pool_size=3, strides=2, padding="SAME")
    for stage, (blocks, strides) in enumerate(zip(layers, (1, 2, 2, 2), strict=True)):
        filters = int(64 * 2**stage * width_multiplier)
        inputs = bottleneck_block(inputs, filters, is_training, strides, use_projection=True, sk_ratio=sk_ratio)
        for _ in range(1, blocks):
            inputs = bottleneck_block(inputs, filters, is_training, 1, sk_ratio=sk_ratio)
    return tf.reduce_mean(inputs, [1, 2])  # final_avg_pool: h


def linear_layer(x, is_training, num_classes, use_bias=True, use_bn=False, name="linear_layer"):
    with tf1.variable_scope(name, reuse=tf1.AUTO_REUSE):
        x = tf1.layers.dense(
            inputs=x,
            units=num_classes,
            use_bias=use_bias and not use_bn,
            kernel_initializer=tf1.random_normal_initializer(stddev=0.01),
        )
        if use_bn:
            x = batch_norm_relu(x, is_training, relu=False, center=use_bias)
    return x


def projection_head(hiddens, is_training, num_layers, out_dim):
    """The 'nonlinear' head; returns every layer's output (hiddens_list in model_util.py)."""
    with tf1.variable_scope("head_contrastive", reuse=tf1.AUTO_REUSE):
        mid_dim = hiddens.shape[-1]
        hiddens_list = [hiddens]
        for j in range(num_layers):
            last = j == num_layers - 1
            hiddens = linear_layer(
                hiddens, is_training, out_dim if last else mid_dim, use_bias=not last, use_bn=True, name=f"nl_{j}"
            )
            hiddens = hiddens if last else tf.nn.relu(hiddens)
            hiddens_list.append(hiddens)
    return hiddens_list


def supervised_head(hiddens, num_classes, is_training):
    with tf1.variable_scope("head_supervised"):
        return linear_layer(hiddens, is_training, num_classes)


def build(images, spec):
    with tf1.variable_scope("base_model"):
        h = resnet(images, spec["layers"], spec["width"], is_training=False, sk_ratio=spec.get("sk_ratio", 0.0))
    outputs = {"h": h}
    hiddens_list = [h]
    if spec["proj_layers"]:
        hiddens_list = projection_head(h, False, spec["proj_layers"], spec["proj_dim"])
        outputs["z"] = hiddens_list[-1]
    if spec["num_classes"]:
        outputs["logits"] = supervised_head(hiddens_list[spec["ft_proj_selector"]], spec["num_classes"], False)
    return outputs


def random_values(session, variables, rng) -> dict:
    """Random values for every variable (fed to their initialisers); BatchNorm statistics far from 0 and 1.

    The last BatchNorm of each residual branch (zero-initialised by the official code) gets a small scale, as in
    trained networks, so that activations stay of order 1 through 50 layers and 1e-4 is a meaningful tolerance.
    """
    gammas = [v for v in variables if v.op.name.endswith("/gamma")]
    zero_init = {
        v.op.name
        for v, value in zip(gammas, session.run([v.initial_value for v in gammas]), strict=True)
        if not value.any()
    }
    values = {}
    for variable in variables:
        shape = variable.shape.as_list()
        leaf = variable.op.name.rsplit("/", 1)[-1]
        if leaf == "kernel" and len(shape) == 4:
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[:3])), shape)
        elif leaf == "kernel":
            value = rng.normal(0, 1 / np.sqrt(shape[0]), shape)
        elif leaf == "gamma":
            value = rng.uniform(0.05, 0.25, shape) if variable.op.name in zero_init else rng.uniform(0.5, 1.5, shape)
        elif leaf == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        elif leaf in ("beta", "bias", "moving_mean"):
            value = rng.normal(0, 0.2, shape)
        else:
            value = rng.normal(0, 1, shape)
        values[variable.initial_value] = value.astype(variable.dtype.base_dtype.as_numpy_dtype)
    return values


def write_reference(spec, out_dir: Path) -> None:
    rng = np.random.default_rng(spec["seed"])
    graph = tf.Graph()
    with graph.as_default():
        size = spec["image_size"]
        images = tf1.placeholder(tf.float32, [None, size, size, 3])
        outputs = build(images, spec)
        network = tf1.global_variables()
        if spec["momentum"]:  # LARS / momentum optimiser slots, named as lars_optimizer.py names them
            for variable in network:
                tf1.get_variable(f"{variable.op.name}/Momentum", variable.shape, initializer=tf1.zeros_initializer())
        if spec["ema"]:
            with tf1.variable_scope("ema_model"):
                build(tf1.placeholder(tf.float32, [None, size, size, 3]), spec)
        tf1.train.get_or_create_global_step()
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            variables = [v for v in tf1.global_variables() if v.op.name != "global_step"]
            session.run(tf1.global_variables_initializer(), random_values(session, variables, rng))
            pixels = rng.uniform(0, 1, (spec["batch"], size, size, 3)).astype(np.float32)
            values = session.run(outputs, {images: pixels})
            folder = out_dir / spec["folder"]
            folder.mkdir(parents=True, exist_ok=True)
            saver.save(session, str(folder / "model.ckpt"), global_step=spec["step"])
    np.savez(folder / "reference.npz", images=pixels, **values)


def write_layout(spec, out_dir: Path) -> None:
    """`OUT_DIR/<folder>/layouts.json.gz`: for each network of `spec["networks"]`, every variable's name and shape in
    its graph (full-size networks: nothing is allocated or computed)."""
    layouts = {}
    for network in spec["networks"]:
        graph = tf.Graph()
        with graph.as_default():
            build(tf1.placeholder(tf.float32, [None, 224, 224, 3]), network)
            layouts[network["name"]] = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
    folder = out_dir / spec["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "layouts.json.gz", "wt") as file:
        json.dump(layouts, file, separators=(",", ":"))


def write_benchmark_checkpoint(spec, out_dir: Path) -> None:
    """A checkpoint of the official layout with the values of TensorFlow's own initialisers (a conversion input)."""
    graph = tf.Graph()
    with graph.as_default():
        build(tf1.placeholder(tf.float32, [None, 224, 224, 3]), spec)
        tf1.train.get_or_create_global_step()
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            folder = out_dir / spec["folder"]
            folder.mkdir(parents=True, exist_ok=True)
            saver.save(session, str(folder / "model.ckpt"), global_step=spec["step"])


def center_crop(image, height, width, crop_proportion):
    """data_util.center_crop with _compute_crop_shape: an aspect-preserving central crop, then resize_bicubic."""
    shape = tf.shape(image)
    image_height, image_width = shape[0], shape[1]
    aspect_ratio = width / height
    image_width_float = tf.cast(image_width, tf.float32)
    image_height_float = tf.cast(image_height, tf.float32)

    def requested_aspect_ratio_wider_than_image():
        crop_height = tf.cast(tf.math.rint(crop_proportion / aspect_ratio * image_width_float), tf.int32)
        crop_width = tf.cast(tf.math.rint(crop_proportion * image_width_float), tf.int32)
        return crop_height, crop_width

    def image_wider_than_requested_aspect_ratio():
        crop_height = tf.cast(tf.math.rint(crop_proportion * image_height_float), tf.int32)
        crop_width = tf.cast(tf.math.rint(crop_proportion * aspect_ratio * image_height_float), tf.int32)
        return crop_height, crop_width

    crop_height, crop_width = tf.cond(
        aspect_ratio > image_width_float / image_height_float,
        requested_aspect_ratio_wider_than_image,
        image_wider_than_requested_aspect_ratio,
    )
    offset_height = ((image_height - crop_height) + 1) // 2
    offset_width = ((image_width - crop_width) + 1) // 2
    image = tf.image.crop_to_bounding_box(image, offset_height, offset_width, crop_height, crop_width)
    return tf1.image.resize_bicubic([image], [height, width])[0]


def preprocess_for_eval(image, height, width):
    """data_util.preprocess_image(is_training=False): [0, 1] floats, centre crop 87.5%, clip."""
    image = tf.image.convert_image_dtype(image, dtype=tf.float32)
    image = center_crop(image, height, width, crop_proportion=0.875)
    image = tf.reshape(image, [height, width, 3])
    return tf.clip_by_value(image, 0.0, 1.0)


def write_preprocessing(spec, out_dir: Path) -> None:
    rng = np.random.default_rng(spec["seed"])
    arrays = {}
    graph = tf.Graph()
    with graph.as_default(), tf1.Session(graph=graph) as session:
        pixels = tf1.placeholder(tf.uint8, [None, None, 3])
        processed = preprocess_for_eval(pixels, spec["size"], spec["size"])
        for index, (height, width) in enumerate(spec["shapes"]):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            arrays[f"image_{index}"] = image
            arrays[f"processed_{index}"] = session.run(processed, {pixels: image})
    folder = out_dir / spec["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "preprocessing.npz", **arrays)


def write_reader_fixture(spec, out_dir: Path) -> None:
    """A tiny checkpoint of several dtypes, and every tensor as TensorFlow's own reader returns it."""
    rng = np.random.default_rng(spec["seed"])
    folder = out_dir / spec["folder"]
    graph = tf.Graph()
    with graph.as_default():
        with tf1.variable_scope("base_model"):
            tf1.layers.conv2d(tf1.placeholder(tf.float32, [None, 4, 4, 3]), 2, 3, use_bias=False)
        tf1.get_variable("base_model/conv2d/kernel/Momentum", [3, 3, 3, 2])
        tf1.get_variable("float64_matrix", [2, 3], dtype=tf.float64)
        tf1.get_variable("int32_vector", [5], dtype=tf.int32, initializer=tf1.zeros_initializer())
        tf1.get_variable("half_scalar", [], dtype=tf.float16)
        tf1.train.get_or_create_global_step()
        with tf1.Session(graph=graph) as session:
            values = {}
            for variable in tf1.global_variables():
                dtype = variable.dtype.base_dtype.as_numpy_dtype
                values[variable.initial_value] = (rng.normal(0, 3, variable.shape.as_list()) * 10).astype(dtype)
            session.run(tf1.global_variables_initializer(), values)
            tf1.train.Saver().save(session, str(folder / "model.ckpt"), global_step=spec["step"])
    reader = tf1.train.NewCheckpointReader(str(folder / f"model.ckpt-{spec['step']}"))
    expected = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    np.savez(folder / "expected.npz", **{name.replace("/", "|"): value for name, value in expected.items()})


def main() -> None:
    specs = json.loads(Path(sys.argv[1]).read_text())
    writers = {
        "network": write_reference,
        "preprocessing": write_preprocessing,
        "reader": write_reader_fixture,
        "layout": write_layout,
        "benchmark": write_benchmark_checkpoint,
    }
    for spec in specs:
        writers[spec.get("kind", "network")](spec, Path(sys.argv[2]))


if __name__ == "__main__":
    main()
