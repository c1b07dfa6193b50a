"""The model test_wheel.sh optimizes: a 2-conv CNN at 32x32, random weights, saved as argv[1]."""
import sys
import keras

inputs = keras.Input(shape=(32, 32, 3), name="image")
x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
x = keras.layers.Conv2D(8, 3, activation="relu")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
outputs = keras.layers.Dense(10)(x)
keras.Model(inputs, outputs).save(sys.argv[1])
