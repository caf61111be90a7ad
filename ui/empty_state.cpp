#include "ui/empty_state.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QStyle>
#include <QTextDocument>
#include <QToolButton>
#include <QVBoxLayout>

#include "ui/theme.h"

namespace resa::ui {

namespace {
QLabel* stepLabel(const QString& n, QWidget* parent) {
  auto* l = new QLabel(n, parent);
  l->setFixedSize(26, 26);
  l->setAlignment(Qt::AlignCenter);
  l->setStyleSheet(
      QStringLiteral("background: #3b6fd9; color: white; border-radius: 13px; "
                     "font-weight: 600;"));
  return l;
}
}  // namespace

EmptyState::EmptyState(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("ChatArea"));
  setAttribute(Qt::WA_StyledBackground);
  auto* outer = new QVBoxLayout(this);
  outer->addStretch(2);
  auto* column = new QWidget(this);
  column->setMaximumWidth(560);
  auto* l = new QVBoxLayout(column);
  l->setSpacing(14);
  auto* logo = new QLabel(column);
  logo->setPixmap(icon(QStringLiteral("app")).pixmap(64, 64));
  logo->setAlignment(Qt::AlignCenter);
  l->addWidget(logo);
  auto* title = new QLabel(tr("Chat with long documents, and watch ReSA work"), column);
  title->setObjectName(QStringLiteral("EmptyTitle"));
  title->setAlignment(Qt::AlignCenter);
  title->setWordWrap(true);
  l->addWidget(title);
  auto* sub = new QLabel(tr("Everything runs on this computer. Sparse decoding reads a tenth of "
                            "the KV cache per token; ReSA rectifies it every few tokens so the "
                            "answer stays close to dense."),
                         column);
  sub->setAlignment(Qt::AlignCenter);
  sub->setWordWrap(true);
  sub->setObjectName(QStringLiteral("StatsFooter"));
  l->addWidget(sub);
  l->addSpacing(8);

  auto step = [&](const QString& n, QWidget* content) {
    auto* row = new QHBoxLayout;
    row->setSpacing(12);
    row->addWidget(stepLabel(n, column), 0, Qt::AlignTop);
    row->addWidget(content, 1);
    l->addLayout(row);
  };

  auto* s1 = new QWidget(column);
  auto* s1l = new QVBoxLayout(s1);
  s1l->setContentsMargins(0, 0, 0, 0);
  modelStep_ = new QLabel(s1);
  modelStep_->setWordWrap(true);
  auto* s1b = new QHBoxLayout;
  openModel_ = new QPushButton(icon(QStringLiteral("folder")), tr("Open model folder…"), s1);
  openModel_->setObjectName(QStringLiteral("PrimaryButton"));
  demo_ = new QPushButton(tr("Use the bundled demo model"), s1);
  demo_->setToolTip(
      tr("A small model trained for ReSA Chat (8,192 tokens of context): it finds facts stated "
         "in a long document and repeats them when asked; it is not a general assistant."));
  s1b->addWidget(openModel_);
  s1b->addWidget(demo_);
  s1b->addStretch();
  s1l->addWidget(modelStep_);
  s1l->addLayout(s1b);
  step(QStringLiteral("1"), s1);

  auto* s2 = new QWidget(column);
  auto* s2l = new QVBoxLayout(s2);
  s2l->setContentsMargins(0, 0, 0, 0);
  auto* s2t = new QLabel(tr("<b>Attach a document</b> — .txt, .md, source code or PDF — with the "
                            "paper clip (File ▸ Attach Document…, Ctrl+D), or drop it anywhere "
                            "on the window. Its token count shows next to it."),
                         s2);
  s2t->setWordWrap(true);
  attachStep_ = s2t;
  auto* attach = new QPushButton(icon(QStringLiteral("attach")), tr("Attach document…"), s2);
  s2l->addWidget(s2t);
  auto* s2b = new QHBoxLayout;
  s2b->addWidget(attach);
  s2b->addStretch();
  s2l->addLayout(s2b);
  step(QStringLiteral("2"), s2);

  auto* s3 = new QLabel(tr("<b>Ask.</b> Pick <b>Dense</b>, <b>Sparse</b> or <b>ReSA</b> in the "
                           "toolbar (it applies from the next answer). The panel on the right "
                           "shows tokens/s, sparsity and rectifications live; <b>Heat map</b> "
                           "shows which passages the answer read; <b>Compare</b> races the "
                           "three modes."),
                        column);
  s3->setWordWrap(true);
  askStep_ = s3;
  step(QStringLiteral("3"), s3);

  auto* h = new QHBoxLayout;
  h->addStretch();
  h->addWidget(column, 1);
  h->addStretch();
  outer->addLayout(h);
  outer->addStretch(3);

  connect(openModel_, &QPushButton::clicked, this, &EmptyState::openModelRequested);
  connect(demo_, &QPushButton::clicked, this, &EmptyState::demoModelRequested);
  connect(attach, &QPushButton::clicked, this, &EmptyState::attachRequested);
  setModelState(false, {});
}

void EmptyState::setModelState(bool loaded, const QString& description) {
  if (loaded) {
    modelStep_->setText(tr("<b>Model ready:</b> %1. To open another model: Model ▸ Open "
                           "Model… (Ctrl+O), a Hugging Face model folder.")
                            .arg(description.toHtmlEscaped()));
    openModel_->setObjectName(QString());
    demo_->hide();
  } else {
    modelStep_->setText(
        description.isEmpty()
            ? tr("<b>Open a model</b>: a Hugging Face folder of a Llama-family model "
                 "(config.json, *.safetensors, tokenizer.model).")
            : description);
    openModel_->setObjectName(QStringLiteral("PrimaryButton"));
    demo_->show();
  }
  openModel_->style()->unpolish(openModel_);
  openModel_->style()->polish(openModel_);
}

QString EmptyState::text() const {
  QStringList steps;
  for (const QLabel* l : {modelStep_, attachStep_, askStep_}) {
    QTextDocument d;
    d.setHtml(l->text());
    steps << d.toPlainText();
  }
  return steps.join(QLatin1Char('\n'));
}

Banner::Banner(QWidget* parent) : QFrame(parent) {
  auto* l = new QHBoxLayout(this);
  l->setContentsMargins(10, 6, 6, 6);
  icon_ = new QLabel(this);
  text_ = new QLabel(this);
  text_->setWordWrap(true);
  text_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  action_ = new QPushButton(this);
  auto* close = new QToolButton(this);
  close->setIcon(icon(QStringLiteral("close")));
  close->setAutoRaise(true);
  close->setToolTip(tr("Dismiss"));
  l->addWidget(icon_, 0, Qt::AlignTop);
  l->addWidget(text_, 1);
  l->addWidget(action_);
  l->addWidget(close, 0, Qt::AlignTop);
  connect(close, &QToolButton::clicked, this, &QWidget::hide);
  connect(action_, &QPushButton::clicked, this, [this] {
    hide();
    emit actionTriggered();
  });
  hide();
}

void Banner::showMessage(const QString& text, bool error, const QString& action) {
  error_ = error;
  setObjectName(error ? QStringLiteral("ErrorBanner") : QStringLiteral("InfoBanner"));
  style()->unpolish(this);
  style()->polish(this);
  icon_->setPixmap(icon(error ? QStringLiteral("error") : QStringLiteral("info")).pixmap(18, 18));
  text_->setText(text);
  action_->setText(action);
  action_->setVisible(!action.isEmpty());
  show();
}

QString Banner::text() const { return text_->text(); }

}  // namespace resa::ui
