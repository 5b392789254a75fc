"""Adapter from keras.applications builders to the registry's builder contract.

Reusing keras.applications' own builders keeps our layer names and order identical to
the official ImageNet weight files, so those files load unchanged.
"""


def keras_application(constructor_name):
    def builder(inputs, include_top=True, classes=1000):
        import keras

        constructor = getattr(keras.applications, constructor_name)
        # weights=None: zoo's weights store fetches and verifies the files itself.
        model = constructor(
            include_top=include_top, weights=None, input_tensor=inputs, classes=classes,
            classifier_activation="softmax",
        )
        return model.output

    builder.__name__ = constructor_name
    return builder


def define(namespace, constructors, preprocessing):
    """Fill a family module's `namespace` with a builder per keras.applications
    constructor (named as Keras names it: `EfficientNetB0`) and its `preprocess_input`
    (`zoo.architectures.preprocessing`'s mode, keras.applications' arithmetic)."""
    import functools

    from zoo.architectures.preprocessing import preprocess_input

    for constructor in constructors:
        namespace[constructor] = keras_application(constructor)
    namespace["preprocess_input"] = functools.partial(preprocess_input, mode=preprocessing)
