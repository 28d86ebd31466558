"""The tools above the course files: they use them, and none of the course files imports them
(chatbot.py, the top of the graph, uses `answers`).

    answers     streamed answers for the chat page, with how each token was chosen
    demo        the main job: `python -m tools.demo` (`make demo`)
    evaluate    score a trained model on a question-answer file: `python -m tools.evaluate`
    notebook    load or run the Part 1 notebook: `python -m tools.notebook` (`make imdb`)
    check       the self-check of anyone's implementation: `python -m tools.check PATH` (`make check`)
"""
