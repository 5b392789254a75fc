"""TF Serving's REST JSON <-> tensor codec, written after its `util/json_tensor.cc` so
that zoo answers a request exactly as TF Serving does: the same row ("instances") and
columnar ("inputs") forms, the same type rules (a JSON whole number is not a float's
only form, but a decimal is never an int32), the same error texts, and numbers written
the same way (a float32 0.0003 as `0.0003`, a whole float as `2.0`, NaN as `NaN`).

    >>> name, arrays, form = request_arrays(body, input_specs)   # {input: TensorSpec-like}
    >>> tensors_json(outputs, form)                               # the response text

Also TF Serving's JSON for Classify/Regress requests (`examples_input`) and results
(`classification_json`, `regression_json`), and `error_json`.

Parsing keeps to rapidjson's behaviour where a client could notice: text after the
document is ignored, NaN/Infinity are numbers, and nesting is not limited by Python's
recursion (an iterative parser takes over for pathologically deep documents).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from json.decoder import scanstring

import numpy as np

from zoo.serving.errors import ServingError

SIGNATURE_KEY = "signature_name"
BYTES_SUFFIX = "_bytes"
DEBUG_STRING_BYTES = 256
MAX_RANK = 32  # numpy's limit is 64 and TF's 254; no signature here takes more than a few

# TF's DataTypeString for the dtypes a request can carry.
DTYPE_NAMES = {
    "DT_FLOAT": "float", "DT_DOUBLE": "double", "DT_INT32": "int32", "DT_INT16": "int16", "DT_INT8": "int8",
    "DT_UINT8": "uint8", "DT_STRING": "string", "DT_INT64": "int64", "DT_BOOL": "bool", "DT_UINT32": "uint32",
    "DT_UINT64": "uint64", "DT_UINT16": "uint16", "DT_HALF": "half", "DT_BFLOAT16": "bfloat16",
    "DT_COMPLEX64": "complex64", "DT_COMPLEX128": "complex128",
}


class Unimplemented(ServingError):
    status = 501
    code = "UNIMPLEMENTED"


# ----------------------------------------------------------------------- JSON values
def json_type(value):
    """rapidjson's type name for a parsed value."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _number_text(value):
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return str(value)


def debug_string(value, limit=DEBUG_STRING_BYTES):
    """A JSON value as rapidjson's pretty writer prints it in TF Serving's errors
    (objects over lines, arrays on one), cut off past `limit` characters. Iterative,
    so a 100,000-deep document costs no recursion."""
    out, size = [], 0
    stack = [("value", value, 0)]
    while stack and size < limit:
        kind, item, depth = stack.pop()
        if kind == "text":
            piece = item
        elif isinstance(item, dict):
            if not item:
                piece = "{}"
            else:
                piece = "{"
                parts = [("text", "\n" + "    " * depth + "}", depth)]
                entries = list(item.items())
                for index in range(len(entries) - 1, -1, -1):
                    key, member = entries[index]
                    parts.append(("value", member, depth + 1))
                    prefix = ("," if index else "") + "\n" + "    " * (depth + 1) + json.dumps(key) + ": "
                    parts.append(("text", prefix, depth))
                stack.extend(parts)
        elif isinstance(item, list):
            if not item:
                piece = "[]"
            else:
                piece = "["
                parts = [("text", "]", depth)]
                for index in range(len(item) - 1, -1, -1):
                    parts.append(("value", item[index], depth))
                    if index:
                        parts.append(("text", ", ", depth))
                stack.extend(parts)
        elif isinstance(item, str):
            piece = json.dumps(item, ensure_ascii=False)
        elif item is None:
            piece = "null"
        elif isinstance(item, bool):
            piece = "true" if item else "false"
        else:
            piece = _number_text(item)
        out.append(piece)
        size += len(piece)
    return "".join(out)


# --------------------------------------------------------------------------- parsing
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_SPACE = re.compile(r"[ \t\n\r]*")
_CONSTANTS = {"true": True, "false": False, "null": None, "NaN": math.nan, "Infinity": math.inf,
              "-Infinity": -math.inf}


_DECODER = json.JSONDecoder()


def parse_json(body):
    """A request body → its top-level JSON object, as TF Serving's ParseJson reads it."""
    if isinstance(body, (bytes, bytearray)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ServingError(f"JSON Parse error: Invalid encoding in string. at offset: {error.start}") from None
    else:
        text = body
    start = _SPACE.match(text, 0).end()
    if start == len(text):
        raise ServingError("JSON Parse error: The document is empty")
    try:
        value, _ = _DECODER.raw_decode(text, start)  # text after the document is ignored
    except RecursionError:
        value = _parse_iteratively(text, start)
    except json.JSONDecodeError as error:
        raise ServingError(f"JSON Parse error: {_rapidjson_message(error, text)} at offset: {error.pos}") from None
    except ValueError as error:  # a number of more than 4,300 digits
        raise ServingError(f"JSON Parse error: {error}") from None
    if not isinstance(value, dict):
        raise ServingError(f"JSON Value: {debug_string(value)} Is not object")
    return value


def _rapidjson_message(error, text):
    """Python's JSON error in rapidjson's words (TF Serving's clients match on them)."""
    message = error.msg
    if message.startswith("Expecting value"):
        return "Invalid value."
    if message.startswith("Expecting property name"):
        return "Missing a name for object member."
    if message.startswith("Expecting ':'"):
        return "Missing a colon after a name of object member."
    if message.startswith("Expecting ',' delimiter"):
        opener = _innermost_container(text, error.pos)
        return ("Missing a comma or '}' after an object member." if opener == "{"
                else "Missing a comma or ']' after an array element.")
    if message.startswith("Unterminated string"):
        return "Missing a closing quotation mark in string."
    if message.startswith("Invalid control character"):
        return "Invalid encoding in string."
    if message.startswith("Invalid \\escape") or message.startswith("Invalid \\u"):
        return "Invalid escape character in string."
    return message


def _innermost_container(text, end):
    depth_stack, in_string, escaped = [], False, False
    for char in text[:end]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth_stack.append(char)
        elif char in "]}" and depth_stack:
            depth_stack.pop()
    return depth_stack[-1] if depth_stack else None


def _parse_iteratively(text, index):
    """The same JSON grammar with an explicit stack (for documents nested deeper than
    Python's recursion limit); slow, and only used for those."""

    def fail(message, at):
        raise ServingError(f"JSON Parse error: {message} at offset: {at}")

    stack = []  # [container, pending key or None]
    while True:
        index = _SPACE.match(text, index).end()
        if index >= len(text):
            fail("Unexpected end of document", index)
        char = text[index]
        # A value starts here (or a container closes / a key is read).
        container = stack[-1][0] if stack else None
        if isinstance(container, dict) and stack[-1][1] is None:
            if char == "}" and not container:
                index += 1
                value = stack.pop()[0]
            elif char == '"':
                key, index = scanstring(text, index + 1)
                index = _SPACE.match(text, index).end()
                if text[index:index + 1] != ":":
                    fail("Missing a colon after a name of object member.", index)
                stack[-1][1] = key
                index += 1
                continue
            else:
                fail("Missing a name for object member.", index)
        elif isinstance(container, list) and char == "]" and not container:
            index += 1
            value = stack.pop()[0]
        elif char == "{":
            stack.append([{}, None])
            index += 1
            continue
        elif char == "[":
            stack.append([[], None])
            index += 1
            continue
        elif char == '"':
            value, index = scanstring(text, index + 1)
        else:
            for word, constant in _CONSTANTS.items():
                if text.startswith(word, index):
                    value, index = constant, index + len(word)
                    break
            else:
                match = _NUMBER.match(text, index)
                if not match:
                    fail("Invalid value.", index)
                token = match.group()
                value = float(token) if match.group(1) or match.group(2) else int(token)
                index = match.end()
        # Attach the finished value, closing containers as far as they end.
        while True:
            if not stack:
                return value
            container, key = stack[-1]
            if isinstance(container, dict):
                container.setdefault(key, value)  # rapidjson's FindMember finds the first
                stack[-1][1] = None
            else:
                container.append(value)
            index = _SPACE.match(text, index).end()
            closing = "}" if isinstance(container, dict) else "]"
            if text[index:index + 1] == ",":
                index += 1
                break
            if text[index:index + 1] == closing:
                index += 1
                value = stack.pop()[0]
                continue
            fail("Missing a comma or '" + closing + "' after an " +
                 ("object member." if closing == "}" else "array element."), index)


# ----------------------------------------------------------------- JSON -> tensors
def _type_error(value, dtype_name):
    return ServingError(f"JSON Value: {debug_string(value)} Type: {json_type(value)} is not of expected type: "
                        f"{DTYPE_NAMES.get(dtype_name, dtype_name)}")


_INT_RANGES = {
    "DT_INT32": (-(2**31), 2**31), "DT_INT16": (-(2**31), 2**31), "DT_INT8": (-(2**31), 2**31),
    "DT_UINT8": (-(2**31), 2**31), "DT_INT64": (-(2**63), 2**63), "DT_UINT32": (0, 2**32),
    "DT_UINT64": (0, 2**64),
}


def _check_leaf(value, dtype_name):
    """One JSON leaf for a tensor of `dtype_name` → the value to store (AddValueToTensor)."""
    if dtype_name == "DT_STRING":
        if isinstance(value, dict):
            return decode_b64_object(value)
        if not isinstance(value, str):
            raise _type_error(value, dtype_name)
        return value.encode("utf-8")
    if isinstance(value, dict):
        raise _type_error(value, dtype_name)
    if dtype_name in ("DT_FLOAT", "DT_DOUBLE"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(value, dtype_name)
        return value
    if dtype_name in _INT_RANGES:
        low, high = _INT_RANGES[dtype_name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
            raise _type_error(value, dtype_name)
        return value
    if dtype_name == "DT_BOOL":
        if not isinstance(value, bool):
            raise _type_error(value, dtype_name)
        return value
    raise Unimplemented(f"Conversion of JSON Value: {debug_string(value)} to type: "
                        f"{DTYPE_NAMES.get(dtype_name, dtype_name)}")


def is_b64_object(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64_object(value):
    if not is_b64_object(value):
        raise ServingError(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    encoded = value["b64"]
    padded = encoded + "=" * (-len(encoded) % 4)  # absl's Base64Unescape takes unpadded text too
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise ServingError("Unable to base64 decode")


def _dense_shape(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


_FAST_KINDS = {"DT_FLOAT": "if", "DT_DOUBLE": "if", "DT_BOOL": "b", "DT_STRING": "U"}


def _fast_array(value, shape, dtype_name, numpy_dtype):
    """numpy's C conversion of a well-formed value (most requests); None sends the value
    through the exact walk, which also words the error."""
    if not shape:
        return None
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        return None
    if list(array.shape) != shape:
        return None
    kind = array.dtype.kind
    if dtype_name in _INT_RANGES:
        if kind != "i":
            return None
        low, high = _INT_RANGES[dtype_name]
        if array.size and (array.min() < low or array.max() >= high):
            return None
    elif kind not in _FAST_KINDS.get(dtype_name, ""):
        return None
    if dtype_name == "DT_STRING":
        return np.char.encode(array, "utf-8").astype(object)
    return _cast(array, dtype_name, numpy_dtype)


def _cast(array, dtype_name, numpy_dtype):
    if dtype_name in ("DT_INT16", "DT_INT8", "DT_UINT8"):
        # TF Serving stores these in int_val and the tensor keeps the low bits.
        return array.astype(np.int64).astype(numpy_dtype)
    with np.errstate(over="ignore"):  # 1e39 for a float32 is +inf, as in TF Serving
        return array.astype(numpy_dtype)


def value_to_array(value, dtype_name, numpy_dtype):
    """A JSON value (scalar, list of lists, b64 objects) → a numpy array of the tensor's
    dtype, with TF Serving's shape and type checks (GetDenseTensorShape + FillTensorProto)."""
    shape = _dense_shape(value)
    if len(shape) > MAX_RANK:
        raise ServingError(f"JSON Value: {debug_string(value)} nests lists {len(shape)} deep; a tensor has at "
                           f"most {MAX_RANK} dimensions")
    fast = _fast_array(value, shape, dtype_name, numpy_dtype)
    if fast is not None:
        return fast
    rank = len(shape)
    leaves = []
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if not isinstance(item, list):
            if level != rank:
                raise ServingError(f"JSON Value: {debug_string(item)} found at incorrect level: {level + 1} in the "
                                   f"JSON DOM. Expected at level: {rank}")
            leaves.append(_check_leaf(item, dtype_name))
            continue
        if level >= rank:
            raise ServingError(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(item) != shape[level]:
            raise ServingError(f"Encountered list at unexpected size: {len(item)} at level: {level} expected size: "
                               f"{shape[level]}")
        stack.extend((child, level + 1) for child in reversed(item))
    if dtype_name == "DT_STRING":
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    return _cast(np.array(leaves, dtype=object).reshape(shape), dtype_name, numpy_dtype) if leaves else \
        np.zeros(shape, dtype=numpy_dtype)


def _instances_to_arrays(instances, specs):
    """The row format: one array per input, the instances stacked on a new axis 0
    (FillTensorMapFromInstancesList)."""
    first = instances[0]
    is_object = lambda value: isinstance(value, dict) and not is_b64_object(value)  # noqa: E731
    if not isinstance(first, dict) and len(specs) > 1:
        raise ServingError("instances is a plain list, but expecting list of objects as multiple input tensors "
                           "required as per tensorinfo_map")
    names = sorted(specs)
    if not is_object(first):
        name = names[0]
        spec = specs[name]
        if not any(isinstance(item, dict) for item in instances):  # b64 objects take the exact walk
            fast = _fast_array(instances, _dense_shape(instances), spec.dtype_name, spec.dtype)
            if fast is not None:
                return {name: fast}
        rows, shape, size = [], None, None
        for index, item in enumerate(instances):
            if is_object(item):
                raise ServingError(f"Expecting value/list but got object at item {index} of input list")
            try:
                row = value_to_array(item, spec.dtype_name, spec.dtype)
                shape, size = _same_shape(row, shape, size)
            except Unimplemented:
                raise
            except ServingError as error:
                raise type(error)(f"Failed to process element: {index} of 'instances' list. Error: "
                                  f"{error.code}: {error}") from None
            rows.append(row)
        return {name: _stack(rows, spec)}
    columns = {name: [] for name in names}
    shapes = {}
    for index, item in enumerate(instances):
        if not is_object(item):
            raise ServingError(f"Expecting object but got list at item {index} of input list")
        for key, value in item.items():
            if key not in specs:
                raise ServingError(f"Failed to process element: {index} key: {key} of 'instances' list. Error: "
                                   f"INVALID_ARGUMENT: JSON object: does not have named input: {key}")
            spec = specs[key]
            try:
                row = value_to_array(value, spec.dtype_name, spec.dtype)
                shapes[key] = _same_shape(row, *shapes.get(key, (None, None)))
            except Unimplemented:
                raise
            except ServingError as error:
                raise type(error)(f"Failed to process element: {index} key: {key} of 'instances' list. Error: "
                                  f"{error.code}: {error}") from None
            columns[key].append(row)
        if set(item) != set(names):
            raise ServingError(f"Failed to process element: {index} of 'instances' list. JSON object: "
                               f"{debug_string(item)} keys must be equal to: {','.join(names)}")
    return {name: _stack(columns[name], specs[name]) for name in names}


def _same_shape(row, shape, size):
    if shape is None:
        return list(row.shape), row.size
    if row.size != size:
        raise ServingError(f"Expecting tensor size: {size} but got: {row.size}")
    if list(row.shape) != shape:
        fmt = lambda dims: "[" + ",".join(map(str, dims)) + "]"  # noqa: E731
        raise ServingError(f"Expecting shape {fmt(shape)} but got: {fmt(row.shape)}")
    return shape, size


def _stack(rows, spec):
    if spec.dtype == object:
        array = np.empty((len(rows), *rows[0].shape), dtype=object)
        for index, row in enumerate(rows):
            array[index, ...] = row
        return array
    return np.stack(rows).astype(spec.dtype, copy=False)


def request_arrays(body, input_specs_for):
    """A predict body → `(signature name, {input: array}, "row" | "columnar")`.

    `input_specs_for(signature_name)` returns the signature's inputs as
    `{name: TensorInfo}` (raising `ServingError` for an unknown signature), so the
    JSON is read against the types the graph wants, as TF Serving reads it.
    """
    document = parse_json(body)
    signature_name = document.get(SIGNATURE_KEY, "")
    if SIGNATURE_KEY in document and not isinstance(signature_name, str):
        raise ServingError(f"JSON Value: {debug_string(document)} not formatted correctly. 'signature_name' key "
                           "must be a string value.")
    specs = input_specs_for(signature_name)
    if not specs:
        raise ServingError(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    has_rows, has_columns = "instances" in document, "inputs" in document
    if has_rows and has_columns:
        raise ServingError(f"JSON Value: {debug_string(document)} Not formatted correctly expecting only one of "
                           "'inputs' or 'instances' keys to exist ")
    if has_rows:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise ServingError(f"JSON Value: {debug_string(document)} Expecting 'instances' to be an list/array")
        if not instances:
            raise ServingError(f"JSON Value: {debug_string(document)} No values in 'instances' array")
        return signature_name, _instances_to_arrays(instances, specs), "row"
    if has_columns:
        inputs = document["inputs"]
        if not isinstance(inputs, dict) or is_b64_object(inputs):
            if len(specs) > 1:
                raise ServingError("inputs is a plain value/list, but expecting an object as multiple input tensors "
                                   "required as per tensorinfo_map")
            name = sorted(specs)[0]
            return signature_name, {name: value_to_array(inputs, specs[name].dtype_name, specs[name].dtype)}, \
                "columnar"
        arrays = {}
        for name in sorted(specs):
            if name not in inputs:
                raise ServingError(f"Missing named input: {name} in 'inputs' object.")
            arrays[name] = value_to_array(inputs[name], specs[name].dtype_name, specs[name].dtype)
        return signature_name, arrays, "columnar"
    raise ServingError("Missing 'inputs' or 'instances' key")


# ----------------------------------------------------------------- tensors -> JSON
def decimals(array):
    """Each float as TF Serving's WriteDecimal writes it: `%g` where that reads back
    as the same value, else all the digits the type needs (`%.9g` float32, `%.17g`
    double); `.0` added to whole numbers; `NaN`, `Infinity`, `-Infinity`."""
    array = np.asarray(array)
    flat = array.reshape(-1)
    if flat.size <= _SMALL:
        return _decimals_small(flat).reshape(array.shape)
    wide = flat.astype(np.float64)
    text = np.char.mod("%g", wide)
    finite = np.isfinite(flat)
    with np.errstate(all="ignore"):
        back = text.astype(np.float64).astype(flat.dtype)
    inexact = finite & (back != flat)
    if inexact.any():
        digits = 9 if flat.dtype == np.float32 else 17
        text = text.astype(object)
        text[inexact] = np.char.mod(f"%.{digits}g", wide[inexact])
    text = text.astype(object)
    for index in np.flatnonzero(finite):
        item = text[index]
        if "." not in item and "e" not in item:
            text[index] = item + ".0"
    for index in np.flatnonzero(~finite):
        value = flat[index]
        text[index] = "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return text.reshape(array.shape)


_SMALL = 256  # below this many values a Python loop beats numpy's string functions


def _decimals_small(flat):
    narrow = np.float32 if flat.dtype == np.float32 else float
    digits = "%.9g" if flat.dtype == np.float32 else "%.17g"
    out = np.empty(flat.size, dtype=object)
    for index, value in enumerate(flat.tolist()):
        if value != value:
            text = "NaN"
        elif value in (math.inf, -math.inf):
            text = "Infinity" if value > 0 else "-Infinity"
        else:
            text = "%g" % value
            if float(narrow(text)) != value:
                text = digits % value
            if "." not in text and "e" not in text:
                text += ".0"
        out[index] = text
    return out


def _leaf_texts(array, name):
    """Every element of an output as JSON text, in an array of its shape."""
    kind = array.dtype.kind
    if array.dtype == object or kind in "SU":
        binary = name.endswith(BYTES_SUFFIX)
        flat = array.reshape(-1)
        out = np.empty(flat.shape, dtype=object)
        for index, item in enumerate(flat):
            if isinstance(item, str):
                item = item.encode("utf-8")
            if binary:
                out[index] = '{"b64": "' + base64.b64encode(item).decode("ascii") + '"}'
            else:
                # TF Serving writes the bytes as they are; bytes that are not UTF-8 are
                # replaced here, because a JSON body has to be text.
                out[index] = json.dumps(item.decode("utf-8", "replace"), ensure_ascii=False)
        return out.reshape(array.shape)
    if kind == "f" and array.dtype in (np.float32, np.float64):
        return decimals(array)
    if kind in "iub":
        flat = array.reshape(-1)
        if flat.size <= _SMALL:
            texts = np.empty(flat.size, dtype=object)
            texts[:] = [("true" if v else "false") if kind == "b" else str(v) for v in flat.tolist()]
            return texts.reshape(array.shape)
        if kind == "b":
            return np.where(array, "true", "false").astype(object)
        return array.astype(str).astype(object)
    dtype_name = {"c": "complex64" if array.dtype == np.complex64 else "complex128",
                  "f": "half" if array.dtype == np.float16 else str(array.dtype)}.get(kind, str(array.dtype))
    raise ServingError(f"Failed to write JSON value for tensor type: {dtype_name}")


def _nested(texts):
    """An array of JSON texts → the JSON text of the nested list (arrays on one line)."""
    if isinstance(texts, str):
        return texts
    if texts.ndim == 0:
        return texts.item()
    if texts.ndim == 1:
        return "[" + ", ".join(texts.tolist()) + "]"
    return "[" + ", ".join(_nested(row) for row in texts) + "]"


def tensors_json(outputs, form):
    """`{"predictions": ...}` (row) or `{"outputs": ...}` (columnar), as TF Serving
    writes them (MakeJsonFromTensors)."""
    if not outputs:
        raise ServingError("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    if form == "columnar":
        if len(names) == 1:
            return '{"outputs": ' + _nested(_leaf_texts(arrays[names[0]], names[0])) + "}"
        body = ", ".join(json.dumps(name) + ": " + _nested(_leaf_texts(arrays[name], name)) for name in names)
        return '{"outputs": {' + body + "}}"
    batch = None
    for name in names:
        if arrays[name].ndim == 0:
            raise ServingError(f"Tensor name: {name} has no shape information ")
        size = arrays[name].shape[0]
        if batch is not None and size != batch:
            raise ServingError(f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}")
        batch = size
    texts = {name: _leaf_texts(arrays[name], name) for name in names}
    if len(names) == 1:
        rows = [_nested(row) for row in texts[names[0]]]
    else:
        rows = ["{" + ", ".join(json.dumps(name) + ": " + _nested(texts[name][i]) for name in names) + "}"
                for i in range(batch)]
    return '{"predictions": [' + ", ".join(rows) + "]}"


def error_json(message):
    return json.dumps({"error": message}, ensure_ascii=False)


# ------------------------------------------------------------- Classify / Regress
def _feature_error(name, kind):
    return ServingError(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_to_feature(value, name, feature, state):
    """AddValueToFeature: the first value sets the feature's kind; later ones must agree."""
    kind = state.get(name)

    def require(wanted):
        if kind not in (None, wanted):
            raise _feature_error(name, kind)
        state[name] = wanted

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_b64_object(value)):
        raise ServingError(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if isinstance(value, bool):
        require("int64")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        require("bytes")
        feature.bytes_list.value.append(decode_b64_object(value))
    elif isinstance(value, str):
        require("bytes")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float) or abs(value) >= 2**64:
        require("float")
        feature.float_list.value.append(float(value))
    else:
        require("int64")
        if value >= 2**63:
            raise ServingError(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)


def _fill_example(value, example):
    if not isinstance(value, dict):
        raise ServingError(f"Example must be JSON object but got JSON {json_type(value)}")
    state = {}
    for name, content in value.items():
        feature = example.features.feature[name]
        feature.Clear()
        for item in content if isinstance(content, list) else [content]:
            _add_to_feature(item, name, feature, state)


def examples_input(body):
    """A classify/regress body → `(signature name, tensorflow_serving Input proto)`."""
    from tensorflow_serving.apis import input_pb2

    document = parse_json(body)
    signature_name = document.get(SIGNATURE_KEY, "")
    if SIGNATURE_KEY in document and not isinstance(signature_name, str):
        raise ServingError(f"JSON Value: {debug_string(document)} not formatted correctly. 'signature_name' key "
                           "must be a string value.")
    request = input_pb2.Input()
    has_context = "context" in document
    if has_context:
        _fill_example(document["context"], request.example_list_with_context.context)
    if "examples" not in document:
        raise ServingError(f"JSON Value: {debug_string(document)} When method is classify, key 'examples' is "
                           "expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise ServingError(f"JSON Value: {debug_string(document)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise ServingError(f"JSON Value: {debug_string(document)} 'examples' value is an empty array")
    for value in examples:
        target = request.example_list_with_context.examples if has_context else request.example_list.examples
        _fill_example(value, target.add())
    return signature_name, request


def classification_json(result):
    """`{"results": [[[label, score], ...], ...]}` (MakeJsonFromClassificationResult)."""
    if not result.classifications:
        raise ServingError("Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classifications in result.classifications:
        scores = decimals(np.array([entry.score for entry in classifications.classes], dtype=np.float32))
        rows.append("[" + ", ".join(f"[{json.dumps(entry.label, ensure_ascii=False)}, {score}]"
                                    for entry, score in zip(classifications.classes, scores)) + "]")
    return '{"results": [' + ", ".join(rows) + "]}"


def regression_json(result):
    """`{"results": [value, ...]}` (MakeJsonFromRegressionResult)."""
    if not result.regressions:
        raise ServingError("Cannot convert empty RegressionResults to JSON")
    values = decimals(np.array([entry.value for entry in result.regressions], dtype=np.float32))
    return '{"results": [' + ", ".join(values.tolist()) + "]}"
