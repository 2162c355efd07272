"""Every command of the palette (Ctrl+P), run as a user would: type it, press Enter."""

from __future__ import annotations

from tui_helpers import ADAPTER, CHAT_MODEL, OTHER_MODEL, notified, run_palette, screen_text, send, wait_for
from tui_helpers import ready as wait_ready

CODE_ANSWER = "Two ways:\n\n```python\nprint('hello')\n```\n\nor\n\n```bash\necho hello\necho again\n```\n"


def screen_name(app) -> str:
    return type(app.screen).__name__


async def test_palette_lists_the_commands(harness):
    app = harness.app()
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_ready(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for expected in (
            "New chat",
            "Open chat…",
            "Rename chat…",
            "Delete chat…",
            "Export chat to Markdown…",
            "System prompt…",
            "Sampling parameters…",
            "Retrieval on/off",
            "Sources panel",
            f"Switch model: {OTHER_MODEL.removesuffix('.gguf')}",
            f"Apply LoRA adapter: {ADAPTER.removesuffix('.gguf')}…",
            "Copy last answer",
            "Keys",
            "Quit",
        ):
            assert expected in titles
        # the loaded model is not offered as a switch target
        assert f"Switch model: {CHAT_MODEL.removesuffix('.gguf')}" not in titles


async def test_new_chat(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "hello")
        await run_palette(pilot, "New chat")
        await wait_for(pilot, lambda: app.conversation is None and not app.chat_log.messages)


async def test_open_chat(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Open chat")
        assert screen_name(app) == "ConversationsScreen"
        assert "No saved chats yet." in screen_text(app)


async def test_rename_chat(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Rename chat")
        assert "Nothing to rename yet" in notified(app)
        await send(pilot, "hello")
        await run_palette(pilot, "Rename chat")
        assert screen_name(app) == "PromptDialog"
        app.screen.query_one("Input").value = "Salutations"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.conversation.title == "Salutations")


async def test_delete_chat(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "hello")
        await run_palette(pilot, "Delete chat")
        assert screen_name(app) == "ConfirmDialog"
        await pilot.press("n")
        await wait_for(pilot, lambda: screen_name(app) != "ConfirmDialog")
        assert len(harness.store.list_all()) == 1
        await run_palette(pilot, "Delete chat")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.conversation is None)
        assert harness.store.list_all() == []


async def test_export_chat_to_markdown(harness, tmp_path):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "What is GGUF?")
        await run_palette(pilot, "Export chat")
        assert screen_name(app) == "PromptDialog"
        target = tmp_path / "out" / "gguf.md"
        app.screen.query_one("Input").value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, target.is_file)
        text = target.read_text()
        assert text.startswith("# What is GGUF?\n")
        assert "### You\n\nWhat is GGUF?" in text
        assert "### Assistant\n\nHello! I am a **fake** model." in text
        assert f"Exported to {target}" in notified(app)


async def test_system_prompt(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "System prompt")
        assert screen_name(app) == "SystemPromptScreen"
        await pilot.press(*"Answer like a pirate.")
        await pilot.press("enter")  # a newline here: the system prompt is multi-line
        await pilot.press(*"Be brief.")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen_name(app) != "SystemPromptScreen")
        assert app.system_prompt == "Answer like a pirate.\nBe brief."
        await send(pilot, "hi")
        sent = harness.engine.calls[-1][0]
        assert (sent[0].role, sent[0].content) == ("system", "Answer like a pirate.\nBe brief.")
        assert harness.store.get(app.conversation.id).system_prompt == "Answer like a pirate.\nBe brief."
        assert "system prompt" in screen_text(app).splitlines()[0]
        # Esc cancels without changing it
        await run_palette(pilot, "System prompt")
        await pilot.press(*" Extra")
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(app) != "SystemPromptScreen")
        assert app.system_prompt == "Answer like a pirate.\nBe brief."


async def test_sampling_parameters(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Sampling parameters")
        assert screen_name(app) == "SettingsScreen"
        screen = app.screen
        screen.query_one("#f-temperature").value = "hot"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert screen_name(app) == "SettingsScreen"
        assert "Temperature: expected a number, got 'hot'" in screen_text(app)
        screen.query_one("#f-temperature").value = "0.7"
        screen.query_one("#f-top_p").value = "1.5"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "top_p must be in (0, 1]" in screen_text(app)
        screen.query_one("#f-top_p").value = "0.8"
        screen.query_one("#f-seed").value = "42"
        screen.query_one("#f-max_tokens").value = "64"
        screen.query_one("#f-kb_top_k").value = "2"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen_name(app) != "SettingsScreen")
        await send(pilot, "hi")
        params = harness.engine.calls[-1][1]
        assert (params.temperature, params.top_p, params.seed, params.max_tokens) == (0.7, 0.8, 42, 64)
        assert app.kb_top_k == 2
        assert harness.store.get_setting("sampling")["temperature"] == 0.7
        assert harness.store.get_setting("kb_top_k") == 2


async def test_saved_sampling_is_used_next_time_but_command_line_flags_win(tui_home, make_harness):
    from assistant.conversations import ConversationStore

    with ConversationStore(tui_home.conversations_db) as store:
        store.set_setting("sampling", {"temperature": 0.9, "top_k": 7, "seed": None})
    harness = make_harness()
    app = harness.app(store="home", sampling={"temperature": 0.1})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        assert (app.sampling.temperature, app.sampling.top_k) == (0.1, 7)
    app.close_resources()


async def test_retrieval_on_off(harness, kb):
    app = harness.app(retriever=kb)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Retrieval on/off")
        assert app.retrieval_on is False
        await run_palette(pilot, "Retrieval on/off")
        assert app.retrieval_on is True


async def test_sources_panel(harness, kb):
    app = harness.app(retriever=kb)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Sources panel")
        assert app.sources_panel.display
        await run_palette(pilot, "Sources panel")
        assert not app.sources_panel.display


async def test_switch_model(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "hello")
        first = harness.engine
        await run_palette(pilot, f"Switch model: {OTHER_MODEL.removesuffix('.gguf')}")
        await wait_for(pilot, lambda: app.model_state == "ready" and app.engine is not first)
        assert first.closed  # the old model is freed
        assert app.model_path.name == OTHER_MODEL
        assert app.status.info.model == OTHER_MODEL
        assert len(app.history) == 2  # the conversation goes on with the new model
        await send(pilot, "still there?")
        assert [m.content for m in harness.engine.calls[-1][0]][-1] == "still there?"
        assert harness.store.messages(app.conversation.id)[-1].meta["model"] == OTHER_MODEL


async def test_switch_model_that_fails_to_load_says_why(harness):
    app = harness.app()
    factory = harness.factory

    def failing(path, options):
        if path.name == OTHER_MODEL:
            from assistant.errors import ModelError

            raise ModelError(f"{path.name} is truncated: its GGUF header ends early; download it again")
        return factory(path, options)

    app.engine_factory = failing
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Switch model: Tiny")
        await wait_for(pilot, lambda: app.model_state == "failed")
        text = screen_text(app)
        assert "Could not load Tiny-Chat.Q8_0.gguf" in text
        assert "truncated" in text and "Traceback" not in text
        await run_palette(pilot, "Switch model: SmolLM2")
        await wait_for(pilot, lambda: app.model_state == "ready")
        assert app.model_path.name == CHAT_MODEL


async def test_apply_change_and_remove_a_lora_adapter_without_reloading(harness):
    app = harness.app()
    adapter = harness.home.adapters_dir / ADAPTER
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Apply LoRA adapter: cooking")
        assert screen_name(app) == "PromptDialog"
        app.screen.query_one("Input").value = "lots"
        await pilot.press("enter")
        await pilot.pause()
        assert "expected a number" in screen_text(app)
        app.screen.query_one("Input").value = "0.5"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.adapters == [(adapter, 0.5)])
        assert harness.engine.adapter_calls == [[(adapter, 0.5)]]
        assert len(harness.engines) == 1  # the base model was not reloaded
        assert "+cooking-lora×0.5" in screen_text(app)  # status bar
        await send(pilot, "hi")
        assert harness.store.messages(app.conversation.id)[-1].meta["adapters"] == [[ADAPTER, 0.5]]
        await run_palette(pilot, "Change scale of LoRA adapter: cooking")
        app.screen.query_one("Input").value = "1.25"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.adapters == [(adapter, 1.25)])
        await run_palette(pilot, "Remove LoRA adapter: cooking")
        await wait_for(pilot, lambda: app.adapters == [])
        assert harness.engine.adapter_calls[-1] == []
        assert len(harness.engines) == 1


async def test_remove_all_lora_adapters(harness):
    from tui_helpers import write_header

    second = write_header(harness.home.adapters_dir / "style-lora.gguf", general_type="adapter", name="style")
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        for name in ("cooking", "style"):
            await run_palette(pilot, f"Apply LoRA adapter: {name}")
            await pilot.press("enter")
            await wait_for(pilot, lambda n=name: any(p.stem.startswith(n) for p, _ in app.adapters))
        assert {p for p, _ in app.adapters} == {harness.home.adapters_dir / ADAPTER, second}
        await run_palette(pilot, "Remove all LoRA adapters")
        await wait_for(pilot, lambda: app.adapters == [])


async def test_an_adapter_the_engine_refuses_is_reported_and_not_applied(make_harness):
    harness = make_harness(fail_adapters="llama.cpp could not load the LoRA adapter cooking-lora.gguf")
    app = harness.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Apply LoRA adapter: cooking")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "could not load the LoRA adapter" in notified(app))
        assert app.adapters == []


async def test_copy_last_answer_and_code_blocks(make_harness):
    harness = make_harness(reply=CODE_ANSWER)
    app = harness.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "show me")
        await run_palette(pilot, "Copy last answer")
        assert app.clipboard == CODE_ANSWER
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Copy code block 1: python print('hello')" in titles
        assert "Copy code block 2: bash echo hello" in titles
        await run_palette(pilot, "Copy code block 2")
        assert app.clipboard == "echo hello\necho again\n"
        await run_palette(pilot, "Copy code block 1")
        assert app.clipboard == "print('hello')\n"


async def test_keys(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Keys")
        assert screen_name(app) == "HelpScreen"


async def test_quit(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await run_palette(pilot, "Quit")
        await wait_for(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0
