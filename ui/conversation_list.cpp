#include "ui/conversation_list.h"

#include <QAction>
#include <QFile>
#include <QFileDialog>
#include <QInputDialog>
#include <QJsonDocument>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QMenu>
#include <QMessageBox>
#include <QPainter>
#include <QPushButton>
#include <QRegularExpression>
#include <QStyledItemDelegate>
#include <QVBoxLayout>

#include "ui/theme.h"

namespace resa::ui {

// --- model -------------------------------------------------------------------------------------

int ConversationListModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : int(rows_.size());
}

QVariant ConversationListModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  const Row& r = rows_[index.row()];
  switch (role) {
    case Qt::DisplayRole:
    case Qt::EditRole:
      return r.title.isEmpty() ? tr("Untitled") : r.title;
    case Qt::ToolTipRole:
      return r.snippet.isEmpty() ? r.title : r.snippet;
    case IdRole:
      return r.id;
    case SnippetRole:
      return r.snippet;
    case UpdatedRole:
      return r.updated;
    case MessageCountRole:
      return r.messageCount;
    default:
      return {};
  }
}

QHash<int, QByteArray> ConversationListModel::roleNames() const {
  auto names = QAbstractListModel::roleNames();
  names[IdRole] = "conversationId";
  names[SnippetRole] = "snippet";
  names[UpdatedRole] = "updated";
  names[MessageCountRole] = "messageCount";
  return names;
}

void ConversationListModel::setRows(const QList<Row>& rows) {
  beginResetModel();
  rows_ = rows;
  endResetModel();
}

void ConversationListModel::renameRow(qint64 id, const QString& title) {
  const int i = rowOf(id);
  if (i < 0) return;
  rows_[i].title = title;
  emit dataChanged(index(i), index(i), {Qt::DisplayRole, Qt::EditRole, Qt::ToolTipRole});
}

int ConversationListModel::rowOf(qint64 id) const {
  for (int i = 0; i < rows_.size(); ++i)
    if (rows_[i].id == id) return i;
  return -1;
}

// --- delegate: title over a muted second line (age, or the search snippet) ---------------------

namespace {
QString age(const QDateTime& t) {
  if (!t.isValid()) return {};
  const qint64 s = t.secsTo(QDateTime::currentDateTime());
  if (s < 60) return QObject::tr("just now");
  if (s < 3600) return QObject::tr("%1 min ago").arg(s / 60);
  if (s < 86400) return QObject::tr("%1 h ago").arg(s / 3600);
  if (s < 7 * 86400) return QObject::tr("%1 d ago").arg(s / 86400);
  return QLocale::system().toString(t.date(), QLocale::ShortFormat);
}

class ConversationDelegate : public QStyledItemDelegate {
 public:
  using QStyledItemDelegate::QStyledItemDelegate;
  QSize sizeHint(const QStyleOptionViewItem& opt, const QModelIndex&) const override {
    return {opt.rect.width(), opt.fontMetrics.height() * 2 + 16};
  }
  void paint(QPainter* p, const QStyleOptionViewItem& opt, const QModelIndex& idx) const override {
    QStyleOptionViewItem o(opt);
    initStyleOption(&o, idx);
    o.text.clear();
    o.widget->style()->drawControl(QStyle::CE_ItemViewItem, &o, p, o.widget);
    const QRect r = opt.rect.adjusted(10, 6, -10, -6);
    QFont f = opt.font;
    f.setWeight(QFont::DemiBold);
    p->save();
    p->setFont(f);
    p->setPen(opt.palette.color(QPalette::Text));
    const QString title =
        QFontMetrics(f).elidedText(idx.data(Qt::DisplayRole).toString(), Qt::ElideRight, r.width());
    p->drawText(QRect(r.left(), r.top(), r.width(), r.height() / 2),
                Qt::AlignLeft | Qt::AlignVCenter, title);
    QFont small = opt.font;
    small.setPointSizeF(opt.font.pointSizeF() * 0.88);
    p->setFont(small);
    p->setPen(mutedTextColor());
    QString sub = idx.data(ConversationListModel::SnippetRole).toString();
    if (sub.isEmpty()) {
      const int n = idx.data(ConversationListModel::MessageCountRole).toInt();
      sub = QObject::tr("%1  ·  %n message(s)", nullptr, n)
                .arg(age(idx.data(ConversationListModel::UpdatedRole).toDateTime()));
    }
    sub = QFontMetrics(small).elidedText(sub.simplified(), Qt::ElideRight, r.width());
    p->drawText(QRect(r.left(), r.top() + r.height() / 2, r.width(), r.height() / 2),
                Qt::AlignLeft | Qt::AlignVCenter, sub);
    p->restore();
  }
};
}  // namespace

// --- widget ------------------------------------------------------------------------------------

ConversationList::ConversationList(app::ConversationStore* store, QWidget* parent)
    : QWidget(parent), store_(store) {
  setObjectName(QStringLiteral("Sidebar"));
  setAttribute(Qt::WA_StyledBackground);
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(10, 10, 10, 10);
  l->setSpacing(8);
  auto* newButton = new QPushButton(icon(QStringLiteral("new-chat")), tr("New chat"), this);
  newButton->setToolTip(tr("Start a new conversation (Ctrl+N)"));
  newButton->setMinimumHeight(32);
  l->addWidget(newButton);
  search_ = new QLineEdit(this);
  search_->setPlaceholderText(tr("Search titles and messages"));
  search_->setClearButtonEnabled(true);
  search_->addAction(icon(QStringLiteral("search")), QLineEdit::LeadingPosition);
  l->addWidget(search_);
  model_ = new ConversationListModel(this);
  view_ = new QListView(this);
  view_->setModel(model_);
  view_->setItemDelegate(new ConversationDelegate(view_));
  view_->setContextMenuPolicy(Qt::CustomContextMenu);
  view_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  view_->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  view_->setUniformItemSizes(true);
  l->addWidget(view_, 1);
  emptyHint_ = new QLabel(this);
  emptyHint_->setObjectName(QStringLiteral("StatsFooter"));
  emptyHint_->setWordWrap(true);
  emptyHint_->setAlignment(Qt::AlignCenter);
  l->addWidget(emptyHint_);

  searchTimer_.setSingleShot(true);
  searchTimer_.setInterval(200);
  connect(&searchTimer_, &QTimer::timeout, this, &ConversationList::reload);
  connect(search_, &QLineEdit::textChanged, this, [this] { searchTimer_.start(); });
  connect(newButton, &QPushButton::clicked, this, &ConversationList::newConversationRequested);
  connect(view_, &QListView::clicked, this, [this](const QModelIndex& i) {
    current_ = i.data(ConversationListModel::IdRole).toLongLong();
    emit conversationSelected(current_);
  });
  connect(view_, &QListView::customContextMenuRequested, this, &ConversationList::showMenu);
  reload();
}

void ConversationList::setSearch(const QString& text) {
  search_->setText(text);
  searchTimer_.stop();
  reload();
}

void ConversationList::reload() {
  QList<ConversationListModel::Row> rows;
  const QString q = search_->text().trimmed();
  const QList<app::ConversationRecord> all = store_->conversations();
  if (q.isEmpty()) {
    for (const auto& c : all) rows.append({c.id, c.title, {}, c.updated, c.messageCount});
  } else {
    // Titles containing the text (any substring), then the full-text hits in message text.
    QSet<qint64> seen;
    for (const auto& c : all) {
      if (!c.title.contains(q, Qt::CaseInsensitive)) continue;
      rows.append({c.id, c.title, {}, c.updated, c.messageCount});
      seen.insert(c.id);
    }
    for (const app::SearchHit& h : store_->search(q)) {
      if (seen.contains(h.conversationId)) continue;
      seen.insert(h.conversationId);
      QString snippet = h.snippet;
      snippet.replace(QLatin1Char('['), QString()).replace(QLatin1Char(']'), QString());
      rows.append({h.conversationId, h.title, QStringLiteral("… %1 …").arg(snippet), {}, 0});
    }
  }
  model_->setRows(rows);
  const int i = model_->rowOf(current_);
  if (i >= 0) view_->setCurrentIndex(model_->index(i));
  if (rows.isEmpty())
    emptyHint_->setText(q.isEmpty() ? tr("No conversations yet.")
                                    : tr("No match for “%1”.").arg(q));
  emptyHint_->setVisible(rows.isEmpty());
}

void ConversationList::setCurrent(qint64 id) {
  current_ = id;
  const int i = model_->rowOf(id);
  if (i >= 0)
    view_->setCurrentIndex(model_->index(i));
  else
    view_->clearSelection();
}

bool ConversationList::renameConversation(qint64 id, const QString& title) {
  if (title.trimmed().isEmpty() || !store_->renameConversation(id, title.trimmed())) return false;
  model_->renameRow(id, title.trimmed());
  emit conversationRenamed(id, title.trimmed());
  return true;
}

bool ConversationList::deleteConversation(qint64 id, bool confirmed) {
  const int i = model_->rowOf(id);
  const QString title = i >= 0 ? model_->row(i).title : QString();
  if (!confirmed) {
    const auto answer = QMessageBox::question(
        this, tr("Delete conversation"),
        tr("Delete “%1” with its messages, documents and comparison runs? This cannot be undone.")
            .arg(title.isEmpty() ? tr("Untitled") : title),
        QMessageBox::Yes | QMessageBox::Cancel, QMessageBox::Cancel);
    if (answer != QMessageBox::Yes) return false;
  }
  if (!store_->deleteConversation(id)) {
    QMessageBox::warning(this, tr("Delete conversation"),
                         tr("Could not delete it: %1").arg(store_->lastError()));
    return false;
  }
  if (current_ == id) current_ = 0;
  reload();
  emit conversationDeleted(id);
  return true;
}

void ConversationList::showMenu(const QPoint& pos) {
  const QModelIndex idx = view_->indexAt(pos);
  if (!idx.isValid()) return;
  const qint64 id = idx.data(ConversationListModel::IdRole).toLongLong();
  QMenu menu(this);
  QAction* rename = menu.addAction(icon(QStringLiteral("edit")), tr("Rename…"));
  QAction* md = menu.addAction(tr("Export as Markdown…"));
  QAction* json = menu.addAction(tr("Export as JSON…"));
  menu.addSeparator();
  QAction* del = menu.addAction(icon(QStringLiteral("delete")), tr("Delete…"));
  QAction* chosen = menu.exec(view_->viewport()->mapToGlobal(pos));
  if (chosen == rename) {
    bool ok = false;
    const QString t = QInputDialog::getText(this, tr("Rename conversation"), tr("Title:"),
                                            QLineEdit::Normal, idx.data().toString(), &ok);
    if (ok) renameConversation(id, t);
  } else if (chosen == del) {
    deleteConversation(id);
  } else if (chosen == md || chosen == json) {
    exportConversation(id, chosen == json);
  }
}

void ConversationList::exportConversation(qint64 id, bool json) {
  const int i = model_->rowOf(id);
  QString base = i >= 0 ? model_->row(i).title : QStringLiteral("conversation");
  base.replace(QRegularExpression(QStringLiteral("[^\\w\\- ]")), QStringLiteral("_"));
  const QString path =
      QFileDialog::getSaveFileName(this, json ? tr("Export as JSON") : tr("Export as Markdown"),
                                   base + (json ? QStringLiteral(".json") : QStringLiteral(".md")),
                                   json ? tr("JSON (*.json)") : tr("Markdown (*.md)"));
  if (path.isEmpty()) return;
  QFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate)) {
    QMessageBox::warning(this, tr("Export"), tr("Cannot write %1: %2").arg(path, f.errorString()));
    return;
  }
  f.write(json ? QJsonDocument(store_->exportJson(id)).toJson(QJsonDocument::Indented)
               : store_->exportMarkdown(id).toUtf8());
}

}  // namespace resa::ui
