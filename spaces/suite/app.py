"""Hugging Face Space: controlsprint demos. The app is `controlsprint demo all`'s, over the default model."""

from controlsprint.demos.launch import launch_space, space_demo

demo = space_demo("all")  # builds the page only: the model loads on the first request

if __name__ == "__main__":
    launch_space(demo)
