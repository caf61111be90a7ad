// Chat formats: the text of each family for one and two turns, with and without a system
// prompt, as the family's Jinja chat_template renders it; detection from template snippets.
// ctest-link: resa_text
#include <QtTest>

#include "engine/chat_format.h"

// Readable failures: QCOMPARE prints these instead of nothing.
namespace QTest {
template <>
char* toString(const std::string& s) {
  return QTest::toPrettyCString(s.data(), qsizetype(s.size()));
}
}  // namespace QTest

using resa::ChatFormat;
using resa::ChatTokens;

namespace {

const ChatTokens kLlama;  // <s>, </s>

// Two turns as the engine renders them: turn 1, the model's answer plus its stop token, what
// follows the answer, turn 2.
std::string two_turns(ChatFormat f, const ChatTokens& t, const std::string& system,
                      const std::string& answer_with_stop) {
  return resa::render_user_turn(f, t, system, "Hi", true) + answer_with_stop +
         resa::render_after_answer(f, t) + resa::render_user_turn(f, t, system, "Bye", false);
}

}  // namespace

class TestChatFormat : public QObject {
  Q_OBJECT

 private slots:
  void names_parse_and_print() {
    for (auto f : {ChatFormat::kRaw, ChatFormat::kLlama2, ChatFormat::kMistral, ChatFormat::kChatML,
                   ChatFormat::kLlama3, ChatFormat::kZephyr}) {
      QCOMPARE(resa::parse_chat_format(resa::chat_format_name(f)), std::optional(f));
    }
    QCOMPARE(resa::chat_format_name(ChatFormat::kChatML), std::string_view("chatml"));
    QCOMPARE(resa::parse_chat_format("Llama3"), std::optional(ChatFormat::kLlama3));
    QVERIFY(!resa::parse_chat_format("vicuna").has_value());
    QVERIFY(!resa::parse_chat_format("").has_value());
  }

  void llama2_puts_system_in_the_first_inst_and_bos_on_every_turn() {
    const auto f = ChatFormat::kLlama2;
    QCOMPARE(resa::render_user_turn(f, kLlama, "", "Hi", true),
             std::string("<s>[INST] Hi [/INST]"));
    QCOMPARE(resa::render_user_turn(f, kLlama, "Be brief.", "Hi", true),
             std::string("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"));
    QCOMPARE(two_turns(f, kLlama, "Be brief.", " Hello </s>"),
             std::string("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s>"
                         "<s>[INST] Bye [/INST]"));
    QCOMPARE(two_turns(f, kLlama, "", " Hello </s>"),
             std::string("<s>[INST] Hi [/INST] Hello </s><s>[INST] Bye [/INST]"));
    // The template strips the message content.
    QCOMPARE(resa::render_user_turn(f, kLlama, "", "  Hi \n", true),
             std::string("<s>[INST] Hi [/INST]"));
    QCOMPARE(resa::render_after_answer(f, kLlama), std::string());
  }

  void mistral_joins_system_to_the_first_message_and_has_one_bos() {
    const auto f = ChatFormat::kMistral;
    QCOMPARE(resa::render_user_turn(f, kLlama, "", "Hi", true),
             std::string("<s>[INST] Hi [/INST]"));
    QCOMPARE(resa::render_user_turn(f, kLlama, "Be brief.", "Hi", true),
             std::string("<s>[INST] Be brief.\n\nHi [/INST]"));
    QCOMPARE(two_turns(f, kLlama, "Be brief.", "Hello</s>"),
             std::string("<s>[INST] Be brief.\n\nHi [/INST]Hello</s>[INST] Bye [/INST]"));
    QCOMPARE(two_turns(f, kLlama, "", "Hello</s>"),
             std::string("<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]"));
    QCOMPARE(resa::render_after_answer(f, kLlama), std::string());
  }

  void chatml_writes_system_only_when_given_and_a_newline_after_answers() {
    const auto f = ChatFormat::kChatML;
    const ChatTokens qwen{"", "<|endoftext|>"};
    QCOMPARE(resa::render_user_turn(f, qwen, "", "Hi", true),
             std::string("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    QCOMPARE(resa::render_user_turn(f, qwen, "Be brief.", "Hi", true),
             std::string("<|im_start|>system\nBe brief.<|im_end|>\n"
                         "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    QCOMPARE(two_turns(f, qwen, "Be brief.", "Hello<|im_end|>"),
             std::string("<|im_start|>system\nBe brief.<|im_end|>\n"
                         "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
                         "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"));
    QCOMPARE(two_turns(f, qwen, "", "Hello<|im_end|>"),
             std::string("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
                         "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"));
    QCOMPARE(resa::render_after_answer(f, qwen), std::string("\n"));
  }

  void llama3_uses_headers_and_begin_of_text_once() {
    const auto f = ChatFormat::kLlama3;
    const ChatTokens t{"<|begin_of_text|>", "<|eot_id|>"};
    const std::string user_hi = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    const std::string assistant = "<|start_header_id|>assistant<|end_header_id|>\n\n";
    const std::string system = "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>";
    QCOMPARE(resa::render_user_turn(f, t, "", "Hi", true),
             "<|begin_of_text|>" + user_hi + assistant);
    QCOMPARE(resa::render_user_turn(f, t, "Be brief.", "Hi", true),
             "<|begin_of_text|>" + system + user_hi + assistant);
    const std::string user_bye = "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>";
    QCOMPARE(two_turns(f, t, "Be brief.", "Hello<|eot_id|>"),
             "<|begin_of_text|>" + system + user_hi + assistant + "Hello<|eot_id|>" + user_bye +
                 assistant);
    QCOMPARE(two_turns(f, t, "", "Hello<|eot_id|>"),
             "<|begin_of_text|>" + user_hi + assistant + "Hello<|eot_id|>" + user_bye + assistant);
    QCOMPARE(resa::render_after_answer(f, t), std::string());
  }

  void zephyr_ends_messages_with_eos_and_a_newline() {
    const auto f = ChatFormat::kZephyr;
    QCOMPARE(resa::render_user_turn(f, kLlama, "", "Hi", true),
             std::string("<s><|user|>\nHi</s>\n<|assistant|>\n"));
    QCOMPARE(resa::render_user_turn(f, kLlama, "Be brief.", "Hi", true),
             std::string("<s><|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"));
    QCOMPARE(
        two_turns(f, kLlama, "Be brief.", "Hello</s>"),
        std::string("<s><|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello</s>\n"
                    "<|user|>\nBye</s>\n<|assistant|>\n"));
    QCOMPARE(two_turns(f, kLlama, "", "Hello</s>"),
             std::string("<s><|user|>\nHi</s>\n<|assistant|>\nHello</s>\n"
                         "<|user|>\nBye</s>\n<|assistant|>\n"));
    QCOMPARE(resa::render_after_answer(f, kLlama), std::string("\n"));
  }

  void raw_is_the_text_with_bos_first() {
    const auto f = ChatFormat::kRaw;
    QCOMPARE(resa::render_user_turn(f, kLlama, "ignored", "Once upon", true),
             std::string("<s>Once upon"));
    QCOMPARE(resa::render_user_turn(f, kLlama, "", " a time", false), std::string(" a time"));
    QCOMPARE(resa::render_user_turn(f, ChatTokens{"", "</s>"}, "", "Once", true),
             std::string("Once"));
    QCOMPARE(resa::render_after_answer(f, kLlama), std::string());
  }

  void stop_strings_name_each_family_end_token() {
    using V = std::vector<std::string>;
    QCOMPARE(resa::chat_stop_strings(ChatFormat::kLlama2, kLlama), V{"</s>"});
    QCOMPARE(resa::chat_stop_strings(ChatFormat::kMistral, kLlama), V{"</s>"});
    QCOMPARE(resa::chat_stop_strings(ChatFormat::kZephyr, kLlama), V{"</s>"});
    QCOMPARE(resa::chat_stop_strings(ChatFormat::kChatML, ChatTokens{"", "<|endoftext|>"}),
             (V{"<|im_end|>", "<|endoftext|>"}));
    QCOMPARE(resa::chat_stop_strings(ChatFormat::kChatML, ChatTokens{"", "<|im_end|>"}),
             V{"<|im_end|>"});
    QCOMPARE(resa::chat_stop_strings(ChatFormat::kLlama3,
                                     ChatTokens{"<|begin_of_text|>", "<|end_of_text|>"}),
             (V{"<|eot_id|>", "<|end_of_text|>"}));
    QCOMPARE(resa::chat_stop_strings(ChatFormat::kRaw, ChatTokens{"", ""}), V{});
  }

  void detects_each_family_from_its_template() {
    // Snippets of the chat_template of Llama-2-chat, Mistral-7B-Instruct-v0.1, Qwen2,
    // Llama-3-Instruct and zephyr-7b-beta.
    const char* llama2 =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% endif %}"
        "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
        "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}";
    const char* mistral =
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
        "'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";
    const char* qwen =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
        "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}";
    const char* llama3 =
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
        "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
        "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}";
    const char* zephyr =
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
        "{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
        "'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% endif %}";
    QCOMPARE(resa::detect_chat_format(llama2), ChatFormat::kLlama2);
    QCOMPARE(resa::detect_chat_format(mistral), ChatFormat::kMistral);
    QCOMPARE(resa::detect_chat_format(qwen), ChatFormat::kChatML);
    QCOMPARE(resa::detect_chat_format(llama3), ChatFormat::kLlama3);
    QCOMPARE(resa::detect_chat_format(zephyr), ChatFormat::kZephyr);
    QCOMPARE(resa::detect_chat_format(""), ChatFormat::kRaw);
    QCOMPARE(resa::detect_chat_format("{{ messages[0]['content'] }}"), ChatFormat::kRaw);
  }
};

QTEST_APPLESS_MAIN(TestChatFormat)
#include "test_chat_format.moc"
