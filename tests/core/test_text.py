from harness.core.text import prompt_and_answer_ids, seam


def test_seam_restores_the_documents_space():
    assert seam("…her.", "As fate") == " "
    assert seam("Question?", "Madera") == " "
    assert seam("ends with space ", "x") == ""
    assert seam("x", " starts with space") == ""
    assert seam("", "x") == "" and seam("x", "") == ""
    assert seam("a", "b", separator="") == ""


def test_answer_ids_are_what_follows_the_prompt(tiny_tokenizer):
    tok = tiny_tokenizer
    prompt, answer = prompt_and_answer_ids(tok, "Which city was Sherry's home?", "Madera")
    assert prompt == tok("Which city was Sherry's home?")["input_ids"]
    assert prompt + answer == tok("Which city was Sherry's home? Madera")["input_ids"]
    # the answer's first token carries the space: not the token of "Madera" tokenized on its own
    assert answer != tok("Madera", add_special_tokens=False)["input_ids"]
    assert tok.decode(answer) == " Madera"
