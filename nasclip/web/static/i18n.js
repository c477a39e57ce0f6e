// Interface text in English and Chinese, chosen by the browser's languages. No build step: plain script.
"use strict";
window.NASCLIP_TEXT = {
  en: {
    user: "User name", password: "Password", log_in: "Log in", log_out: "Log out", search: "Search",
    search_placeholder: "Describe a photo: a dog on the beach", filters: "Filters", after: "Taken from",
    before: "Taken before", camera: "Camera", share: "Share", all_shares: "All shares", folder: "Folder",
    sort: "Order", sort_score: "Best first", sort_newest: "Newest first", sort_oldest: "Oldest first",
    clear: "Clear", taken: "Taken", place: "Place", more_like_this: "More like this", original: "Original",
    close: "Close", wrong_login: "Wrong user name or password.", too_many: "Too many failed logins. Try again later.",
    login_failed: "Cannot log in: ", no_results: "No matching photos (or none you may see).",
    results: (n, more) => `${n}${more ? "+" : ""} photos, best first`,
    like_title: (name) => `Photos like ${name}`, loading: "Searching…", error: "Something went wrong: ",
    indexing: (done, total, eta) => `Indexing: ${done} of ${total} photos` + (eta ? `, about ${eta} min left` : ""),
    indexed: (n) => `${n} photos indexed`, unknown: "unknown", type_something: "Type what you are looking for.",
    session_over: "Please log in again.", moment: "At", raw: "RAW"
  },
  zh: {
    user: "用户名", password: "密码", log_in: "登录", log_out: "退出", search: "搜索",
    search_placeholder: "描述一张照片：海滩上的狗", filters: "筛选", after: "拍摄于此后", before: "拍摄于此前",
    camera: "相机", share: "共享文件夹", all_shares: "全部共享文件夹", folder: "文件夹", sort: "排序",
    sort_score: "最相关", sort_newest: "最新", sort_oldest: "最早", clear: "清除", taken: "拍摄时间",
    place: "地点", more_like_this: "更多相似照片", original: "原图", close: "关闭",
    wrong_login: "用户名或密码错误。", too_many: "登录失败次数过多，请稍后再试。", login_failed: "无法登录：",
    no_results: "没有匹配的照片（或没有您可以查看的照片）。",
    results: (n, more) => `${n}${more ? "+" : ""} 张照片，最相关的在前`,
    like_title: (name) => `与 ${name} 相似的照片`, loading: "正在搜索…", error: "出错了：",
    indexing: (done, total, eta) => `正在建立索引：${done} / ${total} 张照片` + (eta ? `，约剩 ${eta} 分钟` : ""),
    indexed: (n) => `已索引 ${n} 张照片`, unknown: "未知", type_something: "请输入您要找的内容。",
    session_over: "请重新登录。", moment: "时刻", raw: "RAW 原片"
  }
};
window.nasclipLanguage = (function () {
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base in window.NASCLIP_TEXT) return base;
  }
  return "en";
})();
window.t = function (key, ...args) {
  const table = window.NASCLIP_TEXT[window.nasclipLanguage] || window.NASCLIP_TEXT.en;
  const text = key in table ? table[key] : window.NASCLIP_TEXT.en[key];
  return typeof text === "function" ? text(...args) : (text === undefined ? key : text);
};
