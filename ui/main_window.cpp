#include "ui/main_window.h"

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QCloseEvent>
#include <QCoreApplication>
#include <QDir>
#include <QDragEnterEvent>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QScrollArea>
#include <QSplitter>
#include <QStackedWidget>
#include <QStatusBar>
#include <QStringDecoder>
#include <QTabWidget>
#include <QToolBar>
#include <QToolButton>
#include <QVBoxLayout>

#ifdef RESA_HAVE_QTPDF
#include <QPdfDocument>
#include <QPdfSelection>
#endif

#include <algorithm>
#include <cmath>

#include "app/lib/default_model.h"
#include "ui/chat_view.h"
#include "ui/compare_view.h"
#include "ui/composer.h"
#include "ui/conversation_list.h"
#include "ui/document_panel.h"
#include "ui/empty_state.h"
#include "ui/overflow_dialog.h"
#include "ui/settings_dialog.h"
#include "ui/sparkline.h"
#include "ui/stats_panel.h"
#include "ui/theme.h"

namespace resa::ui {

namespace {
const DecodeMode kModes[] = {DecodeMode::kDense, DecodeMode::kSparse, DecodeMode::kResa};
constexpr int kLiveUpdateMs = 100;  // live statistics: 10 updates a second

// Files that are not text, by suffix, so that attaching one says what it is and what to do.
QString notTextKind(const QString& suffix) {
  const QString x = suffix.toLower();
  const auto in = [&x](std::initializer_list<const char*> list) {
    return std::any_of(list.begin(), list.end(),
                       [&x](const char* s) { return x == QLatin1String(s); });
  };
  if (in({"png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff", "heic", "ico"}))
    return QObject::tr("an image");
  if (in({"doc", "docx", "odt", "rtf", "pages", "xls", "xlsx", "ods", "ppt", "pptx", "odp"}))
    return QObject::tr("an office document (export it as PDF or plain text first)");
  if (in({"zip", "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "tar"}))
    return QObject::tr("an archive (unpack it first)");
  if (in({"mp3", "wav", "flac", "ogg", "m4a", "mp4", "mkv", "mov", "avi", "webm"}))
    return QObject::tr("audio or video");
  return {};
}

QString titleFrom(const QString& text) {
  QString t = text.simplified();
  if (t.size() > 48) t = t.left(45).trimmed() + QStringLiteral("…");
  return t.isEmpty() ? QObject::tr("New chat") : t;
}

}  // namespace

MainWindow::MainWindow(app::ConversationStore* store, app::Settings* settings,
                       app::EngineThread* engine, QWidget* parent)
    : QMainWindow(parent), store_(store), settings_(settings), engine_(engine) {
  setWindowTitle(tr("ReSA Chat"));
  setWindowIcon(icon(QStringLiteral("app")));
  setAcceptDrops(true);
  buildActions();
  buildLayout();
  connectEngine();
  resize(1360, 860);
  if (!store_->warning().isEmpty()) banner_->showMessage(store_->warning(), true);
  setBusy(false);
  // Back where the user left off (issue 6): the conversation open when the app last ran.
  if (const qint64 last = settings_->lastConversation(); last && store_->conversation(last))
    openConversation(last);
  updateCenter();
  updateStatus();
}

MainWindow::~MainWindow() = default;

// --- construction ------------------------------------------------------------------------------

void MainWindow::buildActions() {
  openModelAction_ = new QAction(icon(QStringLiteral("folder")), tr("Open Model…"), this);
  openModelAction_->setShortcut(QKeySequence::Open);
  openModelAction_->setToolTip(tr("Open a Hugging Face model folder (Ctrl+O)"));
  connect(openModelAction_, &QAction::triggered, this, &MainWindow::chooseModelFolder);
  tinyAction_ = new QAction(tr("Use the Tiny Random Model"), this);
  tinyAction_->setToolTip(tr("A few million random weights: fast, its text is noise"));
  connect(tinyAction_, &QAction::triggered, this, [this] {
    app::ModelSource s;
    s.preset = QStringLiteral("tiny");
    s.threads = settings_->threads();
    s.ctxLimit = settings_->contextLimit();
    loadModel(s);
  });
  attachAction_ = new QAction(icon(QStringLiteral("attach")), tr("Attach Document…"), this);
  attachAction_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_D));
  connect(attachAction_, &QAction::triggered, this, &MainWindow::chooseDocuments);
  auto* newAction = new QAction(icon(QStringLiteral("new-chat")), tr("New Chat"), this);
  newAction->setShortcut(QKeySequence::New);
  connect(newAction, &QAction::triggered, this, &MainWindow::newConversation);

  modeGroup_ = new QActionGroup(this);
  modeGroup_->setExclusive(true);
  const QString tips[] = {
      tr("Dense: every decode step reads the whole KV cache (the reference)"),
      tr("Sparse: each step reads only the highest-scoring KV blocks; errors can pile up"),
      tr("ReSA: sparse steps, rectified by a dense pass every f tokens")};
  for (DecodeMode m : kModes) {
    auto* a = new QAction(modeLabel(m), this);
    a->setCheckable(true);
    a->setToolTip(tips[int(m)] + tr(" — applies from the next answer"));
    a->setData(int(m));
    modeGroup_->addAction(a);
    modeActions_[int(m)] = a;
    connect(a, &QAction::triggered, this, [this, m] { setMode(m); });
  }
  modeActions_[int(settings_->mode())]->setChecked(true);

  heatAction_ = new QAction(icon(QStringLiteral("heat")), tr("Heat Map"), this);
  heatAction_->setCheckable(true);
  heatAction_->setToolTip(
      tr("Colour the document and earlier messages by how often the selected "
         "answer read them (Sparse and ReSA answers)"));
  connect(heatAction_, &QAction::toggled, this, &MainWindow::setHeatMapVisible);
  compareAction_ = new QAction(icon(QStringLiteral("compare")), tr("Compare"), this);
  compareAction_->setToolTip(tr("Run one prompt in Dense, Sparse and ReSA and chart the speed"));
  connect(compareAction_, &QAction::triggered, this, [this] { showCompare(); });
  settingsAction_ = new QAction(icon(QStringLiteral("settings")), tr("Settings…"), this);
  settingsAction_->setShortcut(QKeySequence::Preferences);
  connect(settingsAction_, &QAction::triggered, this, &MainWindow::openSettings);
  panelAction_ = new QAction(icon(QStringLiteral("panel")), tr("Statistics Panel"), this);
  panelAction_->setCheckable(true);
  panelAction_->setChecked(true);
  panelAction_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_I));

  auto* file = menuBar()->addMenu(tr("&File"));
  file->addAction(newAction);
  file->addAction(attachAction_);
  file->addSeparator();
  auto* quit = file->addAction(tr("Quit"));
  quit->setShortcut(QKeySequence::Quit);
  connect(quit, &QAction::triggered, this, &QWidget::close);
  auto* model = menuBar()->addMenu(tr("&Model"));
  model->addAction(openModelAction_);
  model->addAction(tinyAction_);
  model->addSeparator();
  model->addActions(modeGroup_->actions());
  model->addSeparator();
  model->addAction(settingsAction_);
  auto* view = menuBar()->addMenu(tr("&View"));
  view->addAction(panelAction_);
  view->addAction(heatAction_);
  view->addAction(compareAction_);
  auto* help = menuBar()->addMenu(tr("&Help"));
  aboutAction_ = help->addAction(tr("About ReSA Chat"));
  aboutAction_->setMenuRole(QAction::AboutRole);
  connect(aboutAction_, &QAction::triggered, this, [this] { showAbout(); });

  auto* tb = addToolBar(tr("Main"));
  tb->setObjectName(QStringLiteral("MainToolBar"));
  tb->setMovable(false);
  tb->setIconSize(QSize(18, 18));
  tb->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
  tb->addAction(openModelAction_);
  tb->addAction(attachAction_);
  tb->addSeparator();
  auto* modeLabelW = new QLabel(tr("  Mode "), tb);
  modeLabelW->setObjectName(QStringLiteral("MetricLabel"));
  tb->addWidget(modeLabelW);
  // A segmented control: three adjacent buttons, the checked one in its mode's colour.
  auto* seg = new QWidget(tb);
  auto* segL = new QHBoxLayout(seg);
  segL->setContentsMargins(0, 0, 0, 0);
  segL->setSpacing(0);
  for (DecodeMode m : kModes) {
    auto* b = new QToolButton(seg);
    b->setObjectName(QStringLiteral("ModeButton"));
    b->setDefaultAction(modeActions_[int(m)]);
    b->setToolButtonStyle(Qt::ToolButtonTextOnly);
    const QString radius =
        m == DecodeMode::kDense
            ? QStringLiteral("border-top-left-radius: 6px; border-bottom-left-radius: 6px;")
        : m == DecodeMode::kResa
            ? QStringLiteral("border-top-right-radius: 6px; border-bottom-right-radius: 6px;")
            : QString();
    b->setStyleSheet(
        QStringLiteral("QToolButton { %1 %3 } QToolButton:checked { background: %2; "
                       "border-color: %2; }")
            .arg(radius, modeColor(m).name(),
                 m == DecodeMode::kDense ? QString() : QStringLiteral("border-left: 0;")));
    segL->addWidget(b);
  }
  tb->addWidget(seg);
  tb->addSeparator();
  tb->addAction(heatAction_);
  tb->addAction(compareAction_);
  auto* spacer = new QWidget(tb);
  spacer->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Preferred);
  tb->addWidget(spacer);
  tb->addAction(settingsAction_);
  tb->addAction(panelAction_);
}

void MainWindow::buildLayout() {
  auto* splitter = new QSplitter(this);
  splitter->setChildrenCollapsible(false);
  splitter->setHandleWidth(1);
  sidebar_ = new ConversationList(store_, splitter);
  sidebar_->setMinimumWidth(200);

  auto* middle = new QWidget(splitter);
  middle->setObjectName(QStringLiteral("ChatArea"));
  middle->setAttribute(Qt::WA_StyledBackground);
  auto* ml = new QVBoxLayout(middle);
  ml->setContentsMargins(0, 0, 0, 0);
  ml->setSpacing(0);
  banner_ = new Banner(middle);
  auto* bannerWrap = new QHBoxLayout;
  bannerWrap->setContentsMargins(16, 10, 16, 0);
  bannerWrap->addWidget(banner_);
  ml->addLayout(bannerWrap);
  center_ = new QStackedWidget(middle);
  empty_ = new EmptyState(center_);
  chat_ = new ChatView(center_);
  center_->addWidget(empty_);
  center_->addWidget(chat_);
  ml->addWidget(center_, 1);
  composer_ = new Composer(middle);
  auto* cw = new QHBoxLayout;
  cw->setContentsMargins(16, 8, 16, 14);
  cw->addStretch(0);
  composer_->setMaximumWidth(900);
  cw->addWidget(composer_, 1);
  cw->addStretch(0);
  ml->addLayout(cw);

  side_ = new QTabWidget(splitter);
  side_->setObjectName(QStringLiteral("SidePanel"));
  side_->setDocumentMode(true);
  side_->setMinimumWidth(300);
  stats_ = new StatsPanel;
  auto* statsScroll = new QScrollArea;
  statsScroll->setWidget(stats_);
  statsScroll->setWidgetResizable(true);
  statsScroll->setFrameShape(QFrame::NoFrame);
  statsScroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  documents_ = new DocumentPanel;
  side_->addTab(statsScroll, icon(QStringLiteral("stats")), tr("Statistics"));
  side_->addTab(documents_, icon(QStringLiteral("document")), tr("Document"));

  splitter->addWidget(sidebar_);
  splitter->addWidget(middle);
  splitter->addWidget(side_);
  splitter->setStretchFactor(0, 0);
  splitter->setStretchFactor(1, 1);
  splitter->setStretchFactor(2, 0);
  splitter->setSizes({250, 760, 350});
  setCentralWidget(splitter);
  connect(panelAction_, &QAction::toggled, side_, &QWidget::setVisible);

  // Status bar: model, backend, load progress | context gauge, memory.
  auto* sb = statusBar();
  modelLabel_ = new QLabel(sb);
  backendLabel_ = new QLabel(sb);
  backendLabel_->setObjectName(QStringLiteral("BackendLabel"));
  loadLabel_ = new QLabel(sb);
  loadProgress_ = new QProgressBar(sb);
  loadProgress_->setMaximumWidth(180);
  loadProgress_->setMaximumHeight(14);
  loadProgress_->setTextVisible(false);
  loadProgress_->hide();
  loadLabel_->hide();
  ctxLabel_ = new QLabel(sb);
  ctxGauge_ = new ContextGauge(sb);
  ctxGauge_->setFixedWidth(120);
  memLabel_ = new QLabel(sb);
  sb->addWidget(modelLabel_);
  sb->addWidget(backendLabel_);
  sb->addWidget(loadLabel_);
  sb->addWidget(loadProgress_);
  flashLabel_ = new QLabel(sb);
  flashLabel_->setObjectName(QStringLiteral("StatsFooter"));
  sb->addWidget(flashLabel_, 1);
  flashTimer_.setSingleShot(true);
  connect(&flashTimer_, &QTimer::timeout, flashLabel_, &QLabel::clear);
  liveTimer_.setSingleShot(true);
  liveTimer_.setInterval(kLiveUpdateMs);
  connect(&liveTimer_, &QTimer::timeout, this, &MainWindow::applyLiveStats);
  sb->addPermanentWidget(ctxLabel_);
  sb->addPermanentWidget(ctxGauge_);
  sb->addPermanentWidget(memLabel_);

  connect(sidebar_, &ConversationList::conversationSelected, this, &MainWindow::openConversation);
  connect(sidebar_, &ConversationList::newConversationRequested, this,
          &MainWindow::newConversation);
  connect(sidebar_, &ConversationList::conversationDeleted, this, [this](qint64 id) {
    engine_->forgetConversation(id);
    if (id == conversationId_) newConversation();
  });
  connect(composer_, &Composer::sendRequested, this, &MainWindow::sendMessage);
  connect(composer_, &Composer::stopRequested, this, &MainWindow::stopGenerating);
  connect(composer_, &Composer::attachRequested, this, &MainWindow::chooseDocuments);
  composer_->edit()->viewport()->installEventFilter(this);  // files dropped on the text field
  connect(composer_, &Composer::editCancelled, this, [this] { editingId_ = 0; });
  connect(composer_, &Composer::removeAttachmentRequested, this, [this](int i) {
    const auto docs = store_->documents(conversationId_);
    if (i < 0 || i >= docs.size() || isGenerating()) return;
    store_->removeDocument(docs[i].id);
    reloadDocuments();
  });
  connect(chat_, &ChatView::activated, this, &MainWindow::selectAnswer);
  connect(chat_, &ChatView::regenerateRequested, this, &MainWindow::regenerate);
  connect(chat_, &ChatView::editRequested, this, &MainWindow::editMessage);
  connect(chat_, &ChatView::versionRequested, this, [this](qint64 id, int delta) {
    MessageWidget* m = chat_->message(id);
    if (!m || isGenerating()) return;
    const auto versions = store_->versions(m->record().parentId);
    const int want = m->record().version + delta;
    for (const auto& v : versions)
      if (v.version == want) {
        store_->setCurrentVersion(v.id);
        reloadMessages();
        selectAnswer(v.id);
        return;
      }
  });
  connect(empty_, &EmptyState::openModelRequested, this, &MainWindow::chooseModelFolder);
  connect(empty_, &EmptyState::attachRequested, this, &MainWindow::chooseDocuments);
  connect(empty_, &EmptyState::demoModelRequested, this, [this] {
    // The bundled demo model; in a tree without it, the tiny random preset.
    const QString dir = app::defaultModelDir();
    if (dir.isEmpty()) return tinyAction_->trigger();
    app::ModelSource s;
    s.path = dir;
    s.threads = settings_->threads();
    s.ctxLimit = settings_->contextLimit();
    loadModel(s);
  });
}

void MainWindow::connectEngine() {
  app::EngineWorker* w = engine_->worker();
  connect(w, &app::EngineWorker::modelLoading, this, &MainWindow::onModelLoading);
  connect(w, &app::EngineWorker::modelLoaded, this, &MainWindow::onModelLoaded);
  connect(w, &app::EngineWorker::modelLoadFailed, this, &MainWindow::onModelLoadFailed);
  connect(w, &app::EngineWorker::engineFailed, this, &MainWindow::onEngineFailed);
  connect(w, &app::EngineWorker::generationStarted, this, &MainWindow::onGenerationStarted);
  connect(w, &app::EngineWorker::prefillProgress, this, &MainWindow::onPrefill);
  connect(w, &app::EngineWorker::tokenChunk, this, &MainWindow::onToken);
  connect(w, &app::EngineWorker::tokensCounted, this, [this](qint64 requestId, int tokens) {
    const auto it = pendingCounts_.find(requestId);
    if (it == pendingCounts_.end()) return;
    const qint64 doc = it.value();
    pendingCounts_.erase(it);
    if (tokens < 0 || !store_->setDocumentTokenCount(doc, tokens)) return;
    countedDocs_.insert(doc);
    reloadDocuments();
  });
  connect(w, &app::EngineWorker::stepStats, this, &MainWindow::onStepStats);
  connect(w, &app::EngineWorker::rectification, this, &MainWindow::onRectification);
  connect(w, &app::EngineWorker::contextOverflow, this, &MainWindow::onOverflow);
  connect(w, &app::EngineWorker::finished, this, &MainWindow::onFinished);
  connect(w, &app::EngineWorker::error, this, &MainWindow::onError);
  connect(w, &app::EngineWorker::snapshotNotice, this,
          [this](qint64, const QString& msg) { flash(msg, 6000); });
  connect(w, &app::EngineWorker::compareProgress, this,
          [this](qint64 id, const app::CompareRun& run, int done, int total) {
            if (id == compareRequest_ && compare_) compare_->addRun(run, done, total);
          });
  connect(w, &app::EngineWorker::compareFinished, this,
          [this](qint64 id, const app::CompareResult& result) {
            if (id != compareRequest_) return;
            compareRequest_ = 0;
            store_->addComparison(conversationId_, result.prompt, result.toJson());
            if (compare_) compare_->finish(result);
            setBusy(false);
            emit comparisonFinished();
          });
}

// --- model -------------------------------------------------------------------------------------

QString MainWindow::validateModelFolder(const QString& dir) {
  const QDir d(dir);
  if (dir.isEmpty() || !d.exists()) return tr("The folder %1 does not exist.").arg(dir);
  if (!d.exists(QStringLiteral("config.json")))
    return tr("config.json not found in %1: a model folder in the Hugging Face layout has "
              "config.json, the *.safetensors weights and tokenizer.model.")
        .arg(QDir::toNativeSeparators(dir));
  if (d.entryList({QStringLiteral("*.safetensors")}, QDir::Files).isEmpty())
    return tr("No *.safetensors weights in %1 (PyTorch .bin checkpoints are not supported: "
              "convert them with transformers' save_pretrained(safe_serialization=True)).")
        .arg(QDir::toNativeSeparators(dir));
  if (!d.exists(QStringLiteral("tokenizer.model")) && !d.exists(QStringLiteral("tokenizer.json")))
    return tr("tokenizer.model not found in %1 (a Llama-family model needs sentencepiece's "
              "tokenizer.model).")
        .arg(QDir::toNativeSeparators(dir));
  return {};
}

void MainWindow::chooseModelFolder() {
  const QString start =
      settings_->lastModelPath().isEmpty() ? QDir::homePath() : settings_->lastModelPath();
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Open model folder"), start);
  if (dir.isEmpty()) return;
  const QString problem = validateModelFolder(dir);
  if (!problem.isEmpty()) {
    showError(problem, tr("Choose another folder…"));
    return;
  }
  app::ModelSource s;
  s.path = dir;
  s.threads = settings_->threads();
  s.ctxLimit = settings_->contextLimit();
  loadModel(s);
}

void MainWindow::loadModel(const app::ModelSource& source) {
  if (isGenerating()) stopGenerating();
  modelSource_ = source;
  modelLoading_ = true;
  modelLoaded_ = false;
  loadLabel_->setText(
      tr("Loading %1…")
          .arg(source.preset.isEmpty() ? QFileInfo(source.path).fileName() : source.preset));
  loadLabel_->show();
  loadProgress_->setRange(0, 0);
  loadProgress_->show();
  composer_->setReady(false, tr("Loading the model…"));
  engine_->loadModel(source);
  updateStatus();
}

void MainWindow::start() {
  const QString last = settings_->lastModelPath();
  if (!last.isEmpty() && validateModelFolder(last).isEmpty()) {
    app::ModelSource s;
    s.path = last;
    s.threads = settings_->threads();
    s.ctxLimit = settings_->contextLimit();
    loadModel(s);
    return;
  }
  if (!settings_->lastPreset().isEmpty()) {
    app::ModelSource s;
    s.preset = settings_->lastPreset();
    s.threads = settings_->threads();
    s.ctxLimit = settings_->contextLimit();
    loadModel(s);
    return;
  }
  for (const QString& dir : app::defaultModelCandidates()) {
    if (validateModelFolder(dir).isEmpty()) {
      app::ModelSource s;
      s.path = QFileInfo(dir).canonicalFilePath();
      s.threads = settings_->threads();
      s.ctxLimit = settings_->contextLimit();
      loadModel(s);
      return;
    }
  }
  composer_->setReady(false, tr("Open a model first (Model ▸ Open Model…)"));
}

void MainWindow::onModelLoading(const QString& what, double fraction) {
  loadLabel_->setText(what);
  loadLabel_->show();
  loadProgress_->show();
  if (fraction < 0) {
    loadProgress_->setRange(0, 0);
  } else {
    loadProgress_->setRange(0, 1000);
    loadProgress_->setValue(int(fraction * 1000));
  }
}

void MainWindow::onModelLoaded(const app::ModelInfo& info) {
  modelInfo_ = info;
  chat_->setAnswersStartInThinking(info.answerStartsInThinking);
  modelLoaded_ = true;
  modelLoading_ = false;
  loadLabel_->hide();
  loadProgress_->hide();
  if (!modelSource_.preset.isEmpty()) {
    settings_->setLastPreset(modelSource_.preset);
    settings_->setLastModelPath(QString());
  } else if (!modelSource_.path.isEmpty()) {
    settings_->setLastModelPath(modelSource_.path);
    settings_->setLastPreset(QString());
  }
  if (banner_->isError() && banner_->isVisible()) banner_->hide();
  composer_->setReady(true);
  empty_->setModelState(true, tr("%1 on %2").arg(info.name, info.backend));
  flash(tr("Loaded %1: %2 layers, %3 parameters, context %4 tokens")
            .arg(info.name)
            .arg(info.layers)
            .arg(formatCount(info.parameterCount))
            .arg(formatCount(info.ctxLimit)),
        6000);
  countedDocs_.clear();  // token counts depend on the tokenizer
  reloadDocuments();
  updateStatus();
  setBusy(false);
  emit modelReady();
}

void MainWindow::onModelLoadFailed(const QString& message) {
  modelLoading_ = false;
  modelLoaded_ = false;
  loadLabel_->hide();
  loadProgress_->hide();
  composer_->setReady(false, tr("No model loaded"));
  showError(tr("The model could not be loaded. %1").arg(message), tr("Open another folder…"));
  empty_->setModelState(false, tr("<b>Loading failed.</b> Open another model folder, or use the "
                                  "bundled demo model."));
  updateStatus();
}

void MainWindow::onEngineFailed(const QString& message) {
  modelLoaded_ = false;
  composer_->setReady(false, tr("The engine stopped; reload the model"));
  if (recorder_) recorder_->flush();
  activeRequest_ = 0;
  setBusy(false);
  showError(tr("The engine failed and was stopped: %1").arg(message), tr("Reload model"));
  updateStatus();
}

// --- conversations -----------------------------------------------------------------------------

void MainWindow::newConversation() {
  if (isGenerating()) return;
  conversationId_ = 0;
  settings_->setLastConversation(0);
  editingId_ = 0;
  selectedAnswer_ = 0;
  composer_->setEditing(false);
  chat_->clear();
  sidebar_->setCurrent(0);
  reloadDocuments();
  updateCenter();
  composer_->edit()->setFocus();
}

void MainWindow::openConversation(qint64 id) {
  if (isGenerating() && id != conversationId_) {
    flash(tr("Stop the answer first to switch conversations."), 4000);
    sidebar_->setCurrent(conversationId_);
    return;
  }
  conversationId_ = id;
  settings_->setLastConversation(id);
  editingId_ = 0;
  composer_->setEditing(false);
  sidebar_->setCurrent(id);
  reloadMessages();
  reloadDocuments();
  if (MessageWidget* last = chat_->lastMessage(QStringLiteral("assistant")))
    selectAnswer(last->messageId());
  updateCenter();
}

void MainWindow::ensureConversation(const QString& titleHint) {
  if (conversationId_ != 0) return;
  conversationId_ = store_->createConversation(titleFrom(titleHint));
  settings_->setLastConversation(conversationId_);
  sidebar_->reload();
  sidebar_->setCurrent(conversationId_);
}

void MainWindow::reloadMessages() {
  chat_->clear();
  if (conversationId_ == 0) return;
  for (const app::MessageRecord& m : store_->messages(conversationId_))
    if (m.role == QLatin1String("user") || m.role == QLatin1String("assistant"))
      chat_->addMessage(m);
  chat_->updateActions(isGenerating());
  chat_->scrollToBottom();
}

void MainWindow::reloadDocuments() {
  const auto docs =
      conversationId_ ? store_->documents(conversationId_) : QList<app::DocumentRecord>{};
  QList<QPair<QString, int>> chips;
  bool estimated = false;
  for (const auto& d : docs) {
    chips.append({d.name, d.tokenCount});
    estimated = estimated || !countedDocs_.contains(d.id);
  }
  composer_->setAttachments(chips, estimated);
  documents_->setDocuments(docs, estimated);
  requestTokenCounts(docs);
}

void MainWindow::requestTokenCounts(const QList<app::DocumentRecord>& docs) {
  if (!modelLoaded_) return;
  const QList<qint64> pending = pendingCounts_.values();
  for (const auto& d : docs) {
    if (countedDocs_.contains(d.id) || pending.contains(d.id)) continue;
    const qint64 requestId = engine_->nextRequestId();
    pendingCounts_.insert(requestId, d.id);
    engine_->countTokens(requestId, d.text);
  }
}

OverflowDialog* MainWindow::overflowDialog() const { return overflowDialog_; }

bool MainWindow::isShowingEmptyState() const { return center_->currentWidget() == empty_; }

void MainWindow::updateCenter() {
  const bool empty = conversationId_ == 0 && chat_->messages().isEmpty();
  center_->setCurrentWidget(empty ? static_cast<QWidget*>(empty_) : chat_);
  setWindowTitle(
      conversationId_
          ? tr("%1 — ReSA Chat")
                .arg(
                    store_->conversation(conversationId_).value_or(app::ConversationRecord{}).title)
          : tr("ReSA Chat"));
}

// --- documents ---------------------------------------------------------------------------------

int MainWindow::estimateTokens(const QString& text) const {
  // Presets use the byte-level tokenizer (one token per UTF-8 byte). Sentencepiece models
  // average about 3.6 characters per token on English prose.
  if (!modelSource_.preset.isEmpty()) return int(text.toUtf8().size());
  // Characters per token grow with the vocabulary: ~2 for a 512-piece test tokenizer, ~3.6
  // for Llama-2's 32K, ~4.2 for Llama-3's 128K.
  const int vocab = modelInfo_.vocabSize;
  const double perToken = vocab <= 0 ? 3.6 : vocab < 4096 ? 1.9 : vocab < 64000 ? 3.6 : 4.2;
  return int(std::ceil(text.size() / perToken));
}

QString MainWindow::readDocument(const QString& path, QString* error) {
  const QFileInfo fi(path);
  if (!fi.isFile()) {
    *error = tr("%1 is not a file.").arg(path);
    return {};
  }
  if (const QString kind = notTextKind(fi.suffix()); !kind.isEmpty()) {
    *error = tr("%1 is %2: ReSA Chat reads text (.txt, .md, source code) and PDF documents.")
                 .arg(fi.fileName(), kind);
    return {};
  }
  if (fi.suffix().compare(QLatin1String("pdf"), Qt::CaseInsensitive) == 0) {
#ifdef RESA_HAVE_QTPDF
    QPdfDocument pdf;
    const auto status = pdf.load(path);
    if (status != QPdfDocument::Error::None) {
      QString why;
      switch (status) {
        case QPdfDocument::Error::IncorrectPassword:
          why = tr("it is password-protected; save an unprotected copy and attach that");
          break;
        case QPdfDocument::Error::UnsupportedSecurityScheme:
          why = tr("its encryption is not supported; save an unprotected copy and attach that");
          break;
        case QPdfDocument::Error::InvalidFileFormat:
          why = tr("it is damaged or not a PDF file");
          break;
        case QPdfDocument::Error::FileNotFound:
          why = tr("it cannot be opened");
          break;
        default:
          why = tr("the PDF reader failed (error %1)").arg(int(status));
      }
      *error = tr("Cannot read the PDF %1: %2.").arg(fi.fileName(), why);
      return {};
    }
    QStringList pages;
    for (int i = 0; i < pdf.pageCount(); ++i) pages << pdf.getAllText(i).text();
    const QString text = pages.join(QStringLiteral("\n\n")).trimmed();
    if (text.isEmpty())
      *error = tr("%1 has no text layer (a scanned PDF?): run OCR on it first.").arg(fi.fileName());
    return text;
#else
    *error =
        tr("PDF support (QtPdf) was not built in; convert %1 to text first.").arg(fi.fileName());
    return {};
#endif
  }
  if (fi.size() > 64 * 1024 * 1024) {
    *error = tr("%1 is %2; documents up to 64 MiB can be attached.")
                 .arg(fi.fileName(), formatBytes(double(fi.size())));
    return {};
  }
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) {
    *error = tr("Cannot read %1: %2").arg(path, f.errorString());
    return {};
  }
  const QByteArray bytes = f.readAll();
  if (bytes.left(8192).contains('\0')) {
    *error = tr("%1 looks like a binary file; attach text (.txt, .md, source code) or a PDF.")
                 .arg(fi.fileName());
    return {};
  }
  QStringDecoder utf8(QStringDecoder::Utf8);
  QString text = utf8.decode(bytes);
  if (utf8.hasError()) text = QString::fromLatin1(bytes);  // legacy 8-bit text
  return text;
}

int MainWindow::attachFiles(const QStringList& paths) {
  int attached = 0;
  QStringList errors;
  for (const QString& path : paths) {
    QString error;
    if (attachFile(path, &error))
      ++attached;
    else
      errors << error;
  }
  if (errors.size() > 1) showError(errors.join(QLatin1Char('\n')));  // each named, not the last
  return attached;
}

bool MainWindow::attachFile(const QString& path, QString* errorOut) {
  QString error;
  const QString text = readDocument(path, &error);
  if (text.isEmpty()) {
    if (error.isEmpty()) error = tr("%1 is empty.").arg(QFileInfo(path).fileName());
    showError(error);
    if (errorOut) *errorOut = error;
    return false;
  }
  const QString name = QFileInfo(path).fileName();
  ensureConversation(name);
  if (!store_->addDocument(conversationId_, name, text, estimateTokens(text))) {
    error = tr("Could not store %1: %2").arg(name, store_->lastError());
    showError(error);
    if (errorOut) *errorOut = error;
    return false;
  }
  reloadDocuments();
  updateCenter();
  side_->setCurrentWidget(documents_);
  if (modelLoaded_ && estimateTokens(text) > modelInfo_.ctxLimit && modelInfo_.ctxLimit > 0)
    banner_->showMessage(
        tr("%1 is about %2 tokens, more than the context limit of %3: raise "
           "the limit in Settings ▸ Engine or attach a shorter part.")
            .arg(name, formatCount(estimateTokens(text)), formatCount(modelInfo_.ctxLimit)),
        false);
  return true;
}

void MainWindow::chooseDocuments() {
  const QStringList files = QFileDialog::getOpenFileNames(
      this, tr("Attach documents"), QDir::homePath(),
      tr("Documents (*.txt *.md *.markdown *.rst *.pdf *.c *.cc *.cpp *.h *.hpp *.py *.js *.ts "
         "*.java *.go *.rs *.json *.yaml *.yml *.toml *.csv *.html *.xml *.tex *.sh);;All files "
         "(*)"));
  attachFiles(files);
}

bool MainWindow::acceptsDrop(const QMimeData* mime) const {
  if (!mime || !mime->hasUrls()) return false;
  for (const QUrl& u : mime->urls())
    if (u.isLocalFile()) return true;
  return false;
}

// Every dropped file is taken, so that one we cannot read is refused with a message rather than
// with a forbidden cursor that does not say why.
void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
  if (acceptsDrop(e->mimeData())) e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
  if (!acceptsDrop(e->mimeData())) return;
  QStringList paths;
  for (const QUrl& u : e->mimeData()->urls())
    if (u.isLocalFile()) paths << u.toLocalFile();
  e->acceptProposedAction();
  attachFiles(paths);
}

bool MainWindow::eventFilter(QObject* watched, QEvent* e) {
  // Files dropped on the message field are attached, as anywhere else on the window (the field
  // would insert their paths as text).
  const auto type = e->type();
  if (type == QEvent::DragEnter || type == QEvent::DragMove || type == QEvent::Drop) {
    auto* d = static_cast<QDropEvent*>(e);
    if (acceptsDrop(d->mimeData())) {
      if (type == QEvent::Drop)
        dropEvent(d);
      else
        d->acceptProposedAction();
      return true;
    }
  }
  return QMainWindow::eventFilter(watched, e);
}

// --- generation --------------------------------------------------------------------------------

DecodeMode MainWindow::mode() const { return settings_->mode(); }

QAction* MainWindow::modeAction(DecodeMode m) const { return modeActions_.value(int(m)); }

void MainWindow::setMode(DecodeMode m) {
  settings_->setMode(m);
  if (QAction* a = modeActions_.value(int(m)); a && !a->isChecked()) a->setChecked(true);
  flash(isGenerating() ? tr("%1 mode applies from the next answer.").arg(modeLabel(m))
                       : tr("%1 mode.").arg(modeLabel(m)),
        3000);
}

app::GenerationSettings MainWindow::currentGeneration() const {
  app::GenerationSettings g = settings_->generation();
  g.mode = settings_->mode();
  return g;
}

QList<qint64> MainWindow::historyIdsBefore(qint64 userId) const {
  QList<qint64> ids;
  for (MessageWidget* m : chat_->messages()) {
    if (m->messageId() == userId) break;
    ids.append(m->messageId());
  }
  return ids;
}

void MainWindow::sendMessage(const QString& text) {
  if (isGenerating()) return;
  if (!modelLoaded_) {
    showError(modelLoading_ ? tr("The model is still loading; send again when it is ready.")
                            : tr("No model is loaded: open a model folder first."),
              modelLoading_ ? QString() : tr("Open model…"));
    return;
  }
  ensureConversation(text);
  Pending undo;
  if (editingId_ != 0) {
    // Edit-and-resend: the edited message and everything after it are replaced.
    for (const app::MessageRecord& m : store_->messages(conversationId_, /*allVersions=*/true))
      if (m.id >= editingId_) undo.replacedMessages.append(m);
    store_->deleteMessagesFrom(editingId_);
    chat_->removeFrom(editingId_);
    editingId_ = 0;
    composer_->setEditing(false);
  }
  QList<MessageWidget*> before = chat_->messages();
  const qint64 userId = store_->addMessage(conversationId_, QStringLiteral("user"), text);
  if (userId == 0) {
    showError(tr("Could not store the message: %1").arg(store_->lastError()));
    return;
  }
  chat_->addMessage(*store_->message(userId));
  composer_->clear();
  undo.newUserId = userId;
  startAnswer(userId, text, before, std::move(undo));
}

void MainWindow::startAnswer(qint64 userId, const QString& userText,
                             const QList<MessageWidget*>& before, Pending undo) {
  const app::GenerationSettings g = currentGeneration();
  lastRequestMode_ = g.mode;
  const qint64 answerId = store_->beginAnswer(conversationId_, userId, app::modeToString(g.mode));
  app::GenerateRequest r;
  r.requestId = engine_->nextRequestId();
  r.conversationId = conversationId_;
  for (const auto& d : store_->documents(conversationId_)) r.documents.append({d.name, d.text});
  Pending p = std::move(undo);
  for (MessageWidget* m : before) {
    if (m->record().complete || !m->text().isEmpty()) {
      r.history.append({m->role(), m->text()});
      p.messageIds.append(m->messageId());
    }
  }
  p.messageIds.append(userId);
  r.userText = userText;
  r.settings = g;
  r.overflow = app::OverflowPolicy::kAsk;
  p.request = r;
  p.answerId = answerId;
  pending_[r.requestId] = p;

  auto rec = store_->message(answerId).value_or(app::MessageRecord{});
  rec.id = answerId;
  rec.role = QStringLiteral("assistant");
  rec.mode = app::modeToString(g.mode);
  rec.complete = true;
  streaming_ = chat_->addMessage(rec);
  streaming_->setStreaming(true);
  recorder_ = std::make_unique<app::AnswerRecorder>(store_, answerId);
  activeRequest_ = r.requestId;
  stats_->beginAnswer(g.mode);
  side_->setCurrentIndex(0);
  chat_->scrollToBottom();
  setBusy(true);
  sidebar_->reload();
  updateCenter();
  engine_->generate(r);
}

void MainWindow::stopGenerating() {
  if (activeRequest_) engine_->cancel(activeRequest_);
  if (compareRequest_) engine_->cancel(compareRequest_);
}

void MainWindow::regenerate(qint64 answerId) {
  if (isGenerating() || !modelLoaded_) return;
  MessageWidget* answer = chat_->message(answerId);
  if (!answer) return;
  const qint64 userId = answer->record().parentId;
  MessageWidget* user = chat_->message(userId);
  if (!user) return;
  QList<MessageWidget*> before;
  for (MessageWidget* m : chat_->messages()) {
    if (m == user) break;
    before.append(m);
  }
  chat_->removeFrom(answerId);  // the earlier answer stays in the store as a version
  Pending undo;
  undo.replacedAnswerId = answerId;
  startAnswer(userId, user->text(), before, std::move(undo));
}

void MainWindow::editMessage(qint64 userMessageId) {
  if (isGenerating()) return;
  MessageWidget* m = chat_->message(userMessageId);
  if (!m) return;
  editingId_ = userMessageId;
  composer_->setEditing(true);
  composer_->setText(m->text());
  composer_->edit()->setFocus();
}

void MainWindow::setBusy(bool busy) {
  composer_->setBusy(busy);
  chat_->updateActions(busy);
  openModelAction_->setEnabled(!busy);
  tinyAction_->setEnabled(!busy);
}

void MainWindow::onGenerationStarted(const app::GenerationStart& s) {
  if (s.requestId != activeRequest_) return;
  if (s.droppedTurns > 0 || s.droppedDocuments)
    banner_->showMessage(
        tr("To fit the context, the %n oldest turn(s) were left out of this answer%1.", nullptr,
           s.droppedTurns)
            .arg(s.droppedDocuments ? tr(" and so were the documents") : QString()),
        false);
  if (s.fromSnapshot)
    flash(tr("Reused the saved KV cache: %1 tokens not re-processed.")
              .arg(formatCount(s.reusedTokens)),
          5000);
  ctxUsed_ = s.contextTokens;
  updateStatus();
}

void MainWindow::onPrefill(qint64 id, int done, int total) {
  if (id == activeRequest_) stats_->setPrefillProgress(done, total);
}

void MainWindow::onToken(qint64 id, const QString& text) {
  if (id != activeRequest_ || !streaming_) return;
  streaming_->appendText(text);
  if (recorder_) recorder_->append(text);
  stats_->addToken();
}

void MainWindow::onStepStats(qint64 id, const app::LiveStats& s) {
  if (id != activeRequest_) return;
  if (pendingLive_) {
    QList<app::StepSample> steps = std::move(pendingLive_->steps);
    steps += s.steps;
    *pendingLive_ = s;
    pendingLive_->steps = std::move(steps);
  } else {
    pendingLive_ = s;
  }
  if (!liveTimer_.isActive()) liveTimer_.start();
}

void MainWindow::applyLiveStats() {
  liveTimer_.stop();
  if (!pendingLive_) return;
  const app::LiveStats s = std::move(*pendingLive_);
  pendingLive_.reset();
  stats_->updateLive(s);
  if (s.ctxLimit > 0) {
    ctxUsed_ = s.ctxTokens;
    modelInfo_.ctxLimit = s.ctxLimit;
  }
  if (s.memoryBytes > 0)
    memLabel_->setText(tr("Memory %1").arg(formatBytes(double(s.memoryBytes))));
  updateStatus();
}

void MainWindow::onRectification(qint64 id, const app::RectificationInfo& r) {
  if (id == activeRequest_) stats_->addRectification(r);
}

void MainWindow::onOverflow(const app::ContextOverflow& o) {
  if (o.requestId != activeRequest_ || !pending_.contains(o.requestId)) return;
  Pending p = pending_.take(o.requestId);
  activeRequest_ = 0;
  pendingLive_.reset();
  liveTimer_.stop();
  // Asked without blocking: a nested event loop (exec()) would run the engine's signals inside
  // this handler.
  auto* dialog = new OverflowDialog(o, this);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  overflowDialog_ = dialog;
  connect(dialog, &QDialog::finished, this,
          [this, dialog, p] { answerOverflow(p, dialog->policy()); });
  dialog->open();
}

void MainWindow::answerOverflow(Pending p, std::optional<app::OverflowPolicy> policy) {
  if (!policy) {
    undoSend(p, p.newUserId ? tr("Not sent: the conversation does not fit the context. Your "
                                 "message is back in the box.")
                            : tr("Not regenerated: the conversation does not fit the context."));
    return;
  }
  p.request.requestId = engine_->nextRequestId();
  p.request.overflow = *policy;
  activeRequest_ = p.request.requestId;
  pending_[activeRequest_] = p;
  stats_->beginAnswer(p.request.settings.mode);
  engine_->generate(p.request);
}

qsizetype MainWindow::retainedRequestChars() const {
  qsizetype n = 0;
  for (const Pending& p : pending_) {
    for (const app::DocumentText& d : p.request.documents) n += d.text.size();
    for (const app::ChatTurn& t : p.request.history) n += t.text.size();
    n += p.request.userText.size();
    for (const app::MessageRecord& m : p.replacedMessages) n += m.text.size();
  }
  return n;
}

void MainWindow::undoSend(const Pending& p, const QString& notice) {
  // Nothing was generated and nothing is lost: the conversation is as it was before the send and
  // the message is back in the composer.
  recorder_.reset();
  streaming_ = nullptr;
  store_->deleteMessagesFrom(p.newUserId ? p.newUserId : p.answerId);
  if (p.replacedAnswerId) store_->setCurrentVersion(p.replacedAnswerId);
  // An Edit-and-resend deleted the edited message and its answers: written back, versions too.
  QHash<qint64, qint64> newIds;
  QList<qint64> current;
  for (const app::MessageRecord& m : p.replacedMessages) {
    qint64 id = 0;
    if (m.role == QLatin1String("assistant") && m.parentId) {
      id = store_->beginAnswer(conversationId_, newIds.value(m.parentId, m.parentId), m.mode);
      if (id) store_->finishAnswer(id, m.text, m.mode, m.stats);
      if (id && m.current) current.append(id);
    } else {
      id = store_->addMessage(conversationId_, m.role, m.text, m.mode, m.stats);
    }
    newIds.insert(m.id, id);
  }
  for (qint64 id : current) store_->setCurrentVersion(id);
  if (store_->messages(conversationId_).isEmpty() && store_->documents(conversationId_).isEmpty()) {
    // The send had started this chat and nothing of it is left: neither is the chat (it starts
    // again, titled anew, with the next send).
    store_->deleteConversation(conversationId_);
    conversationId_ = 0;
    settings_->setLastConversation(0);
    sidebar_->setCurrent(0);
  }
  reloadMessages();
  if (p.newUserId) composer_->setText(p.request.userText);  // not for a Regenerate
  if (!p.replacedMessages.isEmpty()) {
    editingId_ = newIds.value(p.replacedMessages.first().id);
    composer_->setEditing(editingId_ != 0);
  }
  setBusy(false);
  stats_->finishAnswer({});
  if (MessageWidget* last = chat_->lastMessage(QStringLiteral("assistant")))
    selectAnswer(last->messageId());
  sidebar_->reload();
  updateCenter();
  composer_->edit()->setFocus();
  flash(notice, 6000);
}

void MainWindow::onFinished(qint64 id, const QString& text, const app::AnswerStats& stats) {
  if (id != activeRequest_) return;
  if (stats.stopReason == QLatin1String("cancelled") && text.isEmpty() &&
      stats.generatedTokens == 0) {
    // Stopped before the first token: an empty answer is nothing to keep, so the send is undone
    // (the message back in the box; a Regenerate keeps the earlier answer).
    const Pending p = pending_.take(id);
    activeRequest_ = 0;
    pendingLive_.reset();
    liveTimer_.stop();
    undoSend(p, p.newUserId ? tr("Stopped before the answer began: your message is back in the "
                                 "box.")
                            : tr("Stopped before the answer began: the earlier answer is kept."));
    return;
  }
  const Pending p = pending_.value(id);
  // The entry stays for the heat map (its message ids); the request's texts (attached documents,
  // earlier turns) would otherwise stay in memory with every answer.
  if (auto it = pending_.find(id); it != pending_.end()) {
    it->request = {};
    it->replacedMessages.clear();
  }
  activeRequest_ = 0;
  pendingLive_.reset();  // finishAnswer() takes every step from the final statistics
  liveTimer_.stop();
  const QJsonObject json = stats.toJson();
  if (recorder_) {
    recorder_->finish(text, stats.mode, json);
    recorder_.reset();
  }
  if (streaming_) streaming_->setFinished(text, stats.mode, json);
  streaming_ = nullptr;
  stats_->finishAnswer(stats);
  ctxUsed_ = stats.contextTokens + stats.generatedTokens;
  if (stats.ctxLimit > 0) modelInfo_.ctxLimit = stats.ctxLimit;
  if (stats.memoryBytes > 0)
    memLabel_->setText(tr("Memory %1").arg(formatBytes(double(stats.memoryBytes))));
  // The rest in the next pass of the event loop: it restyles and repaints much of the window, and
  // with the re-render above it would hold the loop past 50 ms (issue 3). The widget's record
  // has had its version numbers since startAnswer(), so it is not re-read (and re-rendered).
  QTimer::singleShot(0, this, [this, answerId = p.answerId] {
    setBusy(isGenerating());
    sidebar_->reload();
    if (!isGenerating()) {
      selectedAnswer_ = answerId;
      chat_->setSelectedMessage(answerId);
      if (heatAction_->isChecked()) applyHeatFor(answerId);
    }
    updateStatus();
    emit answerFinished(answerId);
  });
}

void MainWindow::onError(qint64 id, const QString& message) {
  if (id == compareRequest_) {
    compareRequest_ = 0;
    if (compare_) compare_->fail(message);
    setBusy(false);
    return;
  }
  if (id != activeRequest_) return;
  const Pending p = pending_.take(id);
  activeRequest_ = 0;
  applyLiveStats();
  if (recorder_) {
    const QString partial = recorder_->text();
    recorder_->finish(partial, app::modeToString(p.request.settings.mode), {});
    recorder_.reset();
  }
  if (streaming_) {
    streaming_->setStreaming(false);
    streaming_->setNotice(tr("The answer stopped with an error: %1").arg(message));
  }
  streaming_ = nullptr;
  setBusy(false);
  showError(message);
}

// --- heat map ----------------------------------------------------------------------------------

void MainWindow::selectAnswer(qint64 answerId) {
  MessageWidget* m = chat_->message(answerId);
  if (!m || m->role() != QLatin1String("assistant") || m->isStreaming()) return;
  selectedAnswer_ = answerId;
  chat_->setSelectedMessage(answerId);
  if (!m->record().stats.isEmpty() && !isGenerating())
    stats_->showAnswer(app::AnswerStats::fromJson(m->record().stats));
  if (heatAction_->isChecked()) applyHeatFor(answerId);
}

void MainWindow::setHeatMapVisible(bool on) {
  if (heatAction_->isChecked() != on) heatAction_->setChecked(on);  // re-enters via toggled
  if (!on) {
    chat_->clearHeat();
    documents_->clearHeat();
    return;
  }
  qint64 id = selectedAnswer_;
  if (!chat_->message(id))
    if (MessageWidget* last = chat_->lastMessage(QStringLiteral("assistant")))
      id = last->messageId();
  applyHeatFor(id);
  side_->setCurrentWidget(documents_);
}

void MainWindow::applyHeatFor(qint64 answerId) {
  chat_->clearHeat();
  MessageWidget* answer = chat_->message(answerId);
  if (!answer || answer->record().stats.isEmpty()) {
    documents_->setHeat({}, 0, tr("Select a finished answer to see what it read."));
    return;
  }
  const app::AnswerStats s = app::AnswerStats::fromJson(answer->record().stats);
  if (s.heat.isEmpty()) {
    documents_->setHeat({}, 0,
                        s.mode == QLatin1String("dense")
                            ? tr("This answer used Dense mode: it read every block equally. "
                                 "Switch to Sparse or ReSA and ask again to see a heat map.")
                            : tr("This answer has no block selection counts."));
    return;
  }
  double maxHits = 0;
  for (const auto& h : s.heat) maxHits = std::max(maxHits, h.hits);
  // Message spans index the history the request was built from, then the new user message.
  QList<qint64> ids;
  for (auto it = pending_.cbegin(); it != pending_.cend(); ++it)
    if (it->answerId == answerId) ids = it->messageIds;
  if (ids.isEmpty()) {
    ids = historyIdsBefore(answer->record().parentId);
    ids.append(answer->record().parentId);
  }
  QHash<qint64, QVector<QPair<QPair<int, int>, double>>> perMessage;
  for (const auto& h : s.heat) {
    if (h.kind != QLatin1String("message") || h.index < 0 || h.index >= ids.size()) continue;
    perMessage[ids[h.index]].append({{h.charStart, h.charEnd}, maxHits > 0 ? h.hits / maxHits : 0});
  }
  for (auto it = perMessage.cbegin(); it != perMessage.cend(); ++it)
    if (MessageWidget* m = chat_->message(it.key())) m->setHeat(it.value());
  documents_->setHeat(s.heat, maxHits,
                      tr("%1 answer: %2% of the KV cache was not read; colour = how often a "
                         "passage's blocks were selected.")
                          .arg(modeLabel(app::modeFromString(s.mode).value_or(DecodeMode::kDense)))
                          .arg(100.0 * (1.0 - s.kvReadFraction), 0, 'f', 0));
}

// --- compare and settings ----------------------------------------------------------------------

CompareView* MainWindow::showCompare() {
  if (!compare_) {
    compare_ = new CompareView(this);
    compare_->setAttribute(Qt::WA_DeleteOnClose, false);
    connect(compare_, &CompareView::runRequested, this, &MainWindow::runCompare);
    connect(compare_, &CompareView::stopRequested, this, [this] {
      if (compareRequest_) engine_->cancel(compareRequest_);
    });
    const auto stored = store_->comparisons(conversationId_ ? conversationId_ : -1);
    if (!stored.isEmpty()) compare_->setResult(app::CompareResult::fromJson(stored.first().result));
  }
  int ctx = 0;
  if (conversationId_) {
    for (const auto& d : store_->documents(conversationId_)) ctx += d.tokenCount;
    for (MessageWidget* m : chat_->messages()) ctx += estimateTokens(m->text());
  }
  compare_->setConversationAvailable(conversationId_ != 0 && ctx > 0, ctx);
  compare_->show();
  compare_->raise();
  return compare_;
}

void MainWindow::runCompare() {
  if (!compare_ || isGenerating() || compareRequest_) return;
  if (!modelLoaded_) {
    compare_->fail(tr("no model is loaded"));
    return;
  }
  app::CompareRequest r;
  r.requestId = engine_->nextRequestId();
  if (compare_->useConversation() && conversationId_) {
    for (const auto& d : store_->documents(conversationId_)) r.documents.append({d.name, d.text});
    for (MessageWidget* m : chat_->messages()) r.history.append({m->role(), m->text()});
  } else {
    r.syntheticLengths = compare_->syntheticLengths();
  }
  r.prompt = compare_->prompt();
  r.settings = currentGeneration();
  r.newTokens = compare_->newTokens();
  compareRequest_ = r.requestId;
  const int total = int(r.modes.size()) * std::max<int>(1, int(r.syntheticLengths.size()));
  compare_->beginRuns(r.requestId, total);
  composer_->setBusy(false);
  engine_->compare(r);
}

SettingsDialog* MainWindow::settingsDialog() {
  if (!settingsDialog_) settingsDialog_ = new SettingsDialog(this);
  settingsDialog_->setValues(settings_->generation(), settings_->contextLimit(),
                             settings_->threads());
  return settingsDialog_;
}

void MainWindow::openSettings() {
  SettingsDialog* d = settingsDialog();
  if (d->exec() != QDialog::Accepted) return;
  app::GenerationSettings g = d->generation();
  g.mode = settings_->mode();
  const bool reload =
      d->contextLimit() != settings_->contextLimit() || d->threads() != settings_->threads();
  settings_->setGeneration(g);
  settings_->setContextLimit(d->contextLimit());
  settings_->setThreads(d->threads());
  settings_->sync();
  if (reload && modelLoaded_) {
    banner_->showMessage(tr("Context limit and threads apply when the model is loaded again."),
                         false, tr("Reload now"));
    disconnect(banner_, &Banner::actionTriggered, nullptr, nullptr);
    connect(banner_, &Banner::actionTriggered, this, [this] {
      app::ModelSource s = modelSource_;
      s.ctxLimit = settings_->contextLimit();
      s.threads = settings_->threads();
      loadModel(s);
    });
  }
}

// --- about ---------------------------------------------------------------------------------------

QString MainWindow::aboutText() const {
  QString backend = tr("none (no model loaded)"), model = tr("none loaded");
  if (modelLoaded_) {
    backend = modelInfo_.gpu ? tr("GPU: %1").arg(modelInfo_.backend) : modelInfo_.backend;
    model = modelInfo_.name;
  }
  return tr("<h3>ReSA Chat %1</h3>"
            "<p>Chat with a local LLM about long documents, in dense, sparse or ReSA decoding "
            "(Rectified Sparse Attention, arXiv 2506.04108).</p>"
            "<p>Backend: %2<br>Model: %3</p>")
      .arg(QStringLiteral(RESA_VERSION), backend.toHtmlEscaped(), model.toHtmlEscaped());
}

QMessageBox* MainWindow::showAbout() {
  auto* box = new QMessageBox(QMessageBox::NoIcon, tr("About ReSA Chat"), aboutText(),
                              QMessageBox::Close, this);
  box->setObjectName(QStringLiteral("AboutDialog"));
  box->setIconPixmap(icon(QStringLiteral("app")).pixmap(64, 64));
  box->setTextFormat(Qt::RichText);
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->open();
  return box;
}

// --- status ------------------------------------------------------------------------------------

void MainWindow::updateStatus() {
  if (modelLoaded_) {
    modelLabel_->setText(tr("  %1").arg(modelInfo_.name));
    modelLabel_->setToolTip(modelInfo_.source);
    backendLabel_->setText(modelInfo_.gpu ? tr("GPU · %1").arg(modelInfo_.backend)
                                          : modelInfo_.backend);
    backendLabel_->setStyleSheet(
        QStringLiteral("padding: 1px 8px; border-radius: 8px; color: white; background: %1;")
            .arg(modelInfo_.gpu ? QStringLiteral("#1f9d63") : QStringLiteral("#6b7280")));
    backendLabel_->show();
  } else {
    modelLabel_->setText(modelLoading_ ? QString() : tr("  No model loaded"));
    backendLabel_->hide();
  }
  const int limit = modelInfo_.ctxLimit;
  ctxGauge_->setValues(ctxUsed_, limit);
  ctxLabel_->setText(
      limit > 0 ? tr("Context %1 / %2").arg(formatCount(ctxUsed_), formatCount(limit)) : QString());
  ctxGauge_->setVisible(limit > 0);
  stats_->setContext(ctxUsed_, limit);
}

void MainWindow::flash(const QString& message, int ms) {
  // A label of our own instead of QStatusBar::showMessage, which would hide the model and
  // backend while it shows.
  flashLabel_->setText(message);
  flashTimer_.start(ms);
}

void MainWindow::showError(const QString& message, const QString& action) {
  banner_->showMessage(message, true, action);
  disconnect(banner_, &Banner::actionTriggered, nullptr, nullptr);
  if (action.isEmpty()) return;
  if (action == tr("Reload model"))
    connect(banner_, &Banner::actionTriggered, this, [this] { loadModel(modelSource_); });
  else
    connect(banner_, &Banner::actionTriggered, this, &MainWindow::chooseModelFolder);
}

void MainWindow::keyPressEvent(QKeyEvent* e) {
  if (e->key() == Qt::Key_Escape && isGenerating()) {
    stopGenerating();
    return;
  }
  QMainWindow::keyPressEvent(e);
}

void MainWindow::closeEvent(QCloseEvent* e) {
  stopGenerating();
  if (recorder_) recorder_->flush();
  if (conversationId_) engine_->saveSnapshot(conversationId_);
  settings_->setValue(QStringLiteral("window/geometry"), saveGeometry());
  settings_->setValue(QStringLiteral("window/state"), saveState());
  settings_->sync();
  e->accept();
}

}  // namespace resa::ui
